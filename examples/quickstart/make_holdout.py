"""Writes data/holdout.csv: labelled frames from day and floodlit night matches (fixed seed)."""
import random

from train import frames

rng = random.Random(2026)
with open("data/holdout.csv", "w") as f:
    f.write("frame,label,grass,lines,crowd,brightness\n")
    i = 0
    for night in (False, True):
        for label, x in frames(rng, 150, night):
            i += 1
            when = "night" if night else "day"
            f.write(f"frames/{when}-{i:04d}.jpg,{label}," + ",".join(str(v) for v in x) + "\n")
print("data/holdout.csv")
