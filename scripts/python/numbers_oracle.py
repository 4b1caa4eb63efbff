"""Random number expressions and what CPython makes of them, for the differential test of
SMILScript's numbers (Tests/InterpreterTests/PythonDifferentialTests.swift).

    python3 numbers_oracle.py SEED COUNT

prints COUNT lines `EXPRESSION<TAB>RESULT`, RESULT as smil prints a value (true/false, floats by
repr), `error` where Python raises or gives a complex number, and `skip` where an integer leaves
64 bits (smil's integers are 64-bit; beyond that they become floats, which the spec says).
Expressions use only syntax the two languages share: + - * / % ** comparisons, unary minus,
parentheses, and f-string / interpolation format specs."""
import random
import sys

LIMIT = 2 ** 63


class Skip(Exception):
    pass


def checked(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and not -LIMIT <= v < LIMIT:
        raise Skip()
    if isinstance(v, complex):
        raise ArithmeticError("complex")
    return v


FLOATS = ["0.1", "2.5", "3.0", "0.0", "1e15", "1e16", "9999999999999994.0", "1.5e-05", "0.0001",
          "123.456", "1e300", "6.02e23", "0.5", "1e-07", "12345678.9", "2.0", "7.25"]


def atom(r):
    k = r.random()
    if k < 0.45:
        return str(r.choice([0, 1, 2, 3, 5, 7, 10, 12, 100, 255, 1000, 65536, r.randint(0, 10 ** 6)]))
    if k < 0.9:
        return r.choice(FLOATS)
    return "(-" + r.choice(["3", "2.5", "7", "0.0", "1e16"]) + ")"


def expr(r, depth):
    """(text, evaluate) of a random expression; evaluate() raises Skip where an integer leaves 64
    bits on the way, and Python's own exception where Python raises."""
    if depth == 0 or r.random() < 0.3:
        t = atom(r)
        return t, lambda: checked(eval(t))
    op = r.choice(["+", "-", "*", "/", "%", "**", "**", "<", "==", "!=", ">=", "-u"])
    if op == "-u":
        t, f = expr(r, depth - 1)
        return "-(" + t + ")", lambda: checked(-f())
    if op == "**":
        base_t, base_f = expr(r, depth - 1)
        e = r.choice(["0", "1", "2", "3", "-1", "-2", "0.5", "2.0", "-0.5", "400", "(-3)"])
        return "(" + base_t + ") ** " + e, lambda: checked(base_f() ** eval(e))
    lt, lf = expr(r, depth - 1)
    rt, rf = expr(r, depth - 1)
    return "(" + lt + ") " + op + " (" + rt + ")", lambda: checked(eval("a " + op + " b", {"a": lf(), "b": rf()}))


SPECS_INT = ["d", "b", "o", "x", "X", "#x", "#o", "#b", "c", "n", ">8", "<6d", "^9", "+d", " d", "08d", ",",
             "_d", "=+10d", "*^12", "e", ".2f", ".3e", "g", "%", ".1%", ",d", "10,"]
SPECS_FLOAT = ["", ".3f", ".0f", "e", ".2e", "E", "g", ".3g", "G", ".10g", "n", "%", ".1%", ">12.4f",
               "<10", "^11.2", "+.2f", " .1f", "012.3f", ",.2f", ",", ".3", ".1", "#.0f", "#g", "x", "d", "c",
               "=+12.1e", "*>10.1f"]


def value_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def main():
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    r = random.Random(seed)
    for _ in range(count):
        spec = r.choice(SPECS_INT + SPECS_FLOAT) if r.random() < 0.25 else None
        t, f = expr(r, 1 if spec is not None else r.randint(1, 3))
        try:
            v = f()
        except Skip:
            continue
        except (ZeroDivisionError, OverflowError, ArithmeticError, ValueError):
            if spec is None:
                print(t + "\terror")
            continue
        if spec is None:
            print(t + "\t" + value_text(v))
            continue
        # A format spec applied to a number ('_' grouping is not in the contract).
        if isinstance(v, bool) or "_" in spec:
            continue
        try:
            result = format(v, spec)
        except (ValueError, OverflowError):
            result = "error"
        if "\n" in result or "\t" in result or "\r" in result:
            continue   # a control character from 'c' would break the line format
        print('"{' + t + ":" + spec + '}"\t' + result)


main()
