import os, random, sys
root=sys.argv[1]; n=int(sys.argv[2]); dirs=int(sys.argv[3])
random.seed(1)
for d in range(dirs):
    os.makedirs(f"{root}/d{d//100}/e{d}", exist_ok=True)
for i in range(n):
    d=i%dirs
    size=random.randint(0,4096)
    with open(f"{root}/d{d//100}/e{d}/f{i}","wb") as f:
        f.write(random.randbytes(size//2)+b"a"*(size-size//2))
