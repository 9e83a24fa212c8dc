"""Writes the benchmarks' tree of small files: 50 folders of 100 files of
1-4 KiB of random bytes (the same sizes on every run) under the folder
given, which must exist."""
import os
import random
import sys

random.seed(7)
root = sys.argv[1]
for d in range(50):
    os.makedirs(f"{root}/d{d:02}", exist_ok=True)
    for f in range(100):
        with open(f"{root}/d{d:02}/f{f:03}.txt", "wb") as out:
            out.write(os.urandom(random.randint(1024, 4096)))
