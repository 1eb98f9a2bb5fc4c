import os, random, sys
root=sys.argv[1]; n=int(sys.argv[2]); dirs=int(sys.argv[3]); seed=int(sys.argv[4])
random.seed(seed)
for k in range(n//100):
    i=random.randrange(n); d=i%dirs
    p=f"{root}/d{d//100}/e{d}/f{i}"
    size=random.randint(0,4096)
    with open(p,"wb") as f: f.write(random.randbytes(size//2)+b"b"*(size-size//2))
