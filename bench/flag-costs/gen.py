# A tree shaped like the benchmark's default profile: 17,000 files of 0-4 KiB,
# 2,950 of 4-256 KiB, 28 of 4-32 MiB, a 256 MiB image with 1 MiB holes.
import os, random
r = random.Random(7)
base = '/var/tmp/flags/src'
dirs = [f'{base}/d{i:03}/e{j:02}' for i in range(60) for j in range(20)]
for d in dirs: os.makedirs(d, exist_ok=True)
def put(path, n):
    with open(path, 'wb') as f: f.write(r.randbytes(n))
for k in range(17000): put(f'{r.choice(dirs)}/f{k}.c', r.randint(0, 4096))
for k in range(2950): put(f'{r.choice(dirs)}/g{k}.h', int(4096 * 64 ** r.random()))
for k in range(28): put(f'{r.choice(dirs)}/big{k}', r.randint(4 << 20, 32 << 20))
os.makedirs(f'{base}/vm', exist_ok=True)
with open(f'{base}/vm/disk.img', 'wb') as f:
    for m in range(256):
        if m % 8 == 7: f.seek(1 << 20, 1)
        else: f.write(r.randbytes(1 << 20))
    f.truncate(256 << 20)
