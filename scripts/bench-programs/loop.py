# The CPython side of the 10-million-iteration loop (scripts/bench interp).
s = 0
for i in range(10_000_000): s += i
print(s)
