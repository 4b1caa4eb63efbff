// CallFuzzer.swift: random calls of every binding — functions, tensor methods, object members,
// operators — with edge-case arguments (zero, negative and huge sizes, empty and rank-0 tensors,
// wrong types, nil), as source text. `smil fuzz` runs them in a child process, one after another,
// and names the call that crashed it; this file only writes the calls.

import Foundation

/// Writes call `i` of a seeded sequence of random library calls. Call `i` depends only on the seed
/// and `i`, so a run restarted after a crash at `i` goes on at `i + 1` with the same calls.
public struct CallFuzzer {
    /// The workspace the calls use: tensors of every awkward kind, layers, a sparse map, a tiny
    /// dataset with its loader, a MIL model and an optimizer. Run once in a fresh interpreter whose
    /// working directory is a scratch folder (it writes the dataset there).
    public static let datasetFixtures = """
        let slides = synthetic_slides("slides", 2, 2, 8, 1)
        let ds = SlideDataset(slides)
        let dl = DataLoader(ds, 2, false, false, 0)
        """

    /// Rebuilt every `resetInterval` calls, so that a call that mutates one (requires_grad, an
    /// optimizer step, `seed`) cannot steer all later ones.
    public static let fixtures = """
        seed(0)
        let t0 = tensor(1.5)
        let t1 = tensor([1.0, -2.0, 3.0, 0.5])
        let t2 = randn([2, 3])
        let t4 = randn([2, 3, 4, 4])
        let te = zeros([0, 3])
        let ti = tensor([[0, 1, 2], [3, 4, 5]])
        var tg = randn([2, 3])
        tg.requires_grad = true
        let tn = tensor([float("nan"), float("inf"), -0.0])
        let coords = tensor([[0, 0, 0], [1, 2, 0], [3, 1, 1]])
        let inp = InputLayer()
        let sp = inp(coords, randn([3, 3]))
        let m = Linear(3, 2)
        let conv = Conv2d(3, 2, 3)
        let seq = Sequential([Linear(3, 4), ReLU(), Linear(4, 2)])
        let sseq = SparseSequential([SubmanifoldConv2d(3, 4, 3), SparseReLU(), SparseGlobalAvgPool()])
        let mil = SparseConvMIL(Sequential([Conv2d(3, 4, 3), AdaptiveAvgPool2d(1), Flatten()]), SparseSequential([SubmanifoldConv2d(4, 4, 3), SparseGlobalAvgPool()]), Linear(4, 2), 1, false, false, false)
        let opt = SGD(m.parameters(), 0.1)
        let f = fn(x) => x
        let d = {"a": 1, "weight": t2}
        let s = "abc"
        let l = [1, 2, 3]
        """

    /// Calls between two rebuilds of the fixtures.
    public static let resetInterval = 50

    /// Names never called: `exit` ends the process by design.
    public static let excluded: Set<String> = ["exit"]

    /// Names called a twentieth as often as the rest: building a large ResNet (a second or more
    /// of random initialisation) or writing a dataset dominates a run without finding more.
    public static let rare: Set<String> = ["resnet34", "resnet50", "wide_resnet50_2", "sparseconvmil", "synthetic_slides", "synthetic_bags",
                                           "extract_features", "write_slide", "mosaic"]

    /// Argument expressions, each an edge case for some parameter.
    static let arguments: [String] = [
        // Integers: zero, small, negative, huge, and past 32 and 62 bits.
        "0", "1", "2", "3", "-1", "-3", "7", "64", "2147483648", "4611686018427387904", "-4611686018427387904",
        "9223372036854775807",
        // Floats, with NaN, infinities and signed zero.
        "0.0", "0.5", "-2.5", "1e30", "-1e-30", "float(\"nan\")", "float(\"inf\")", "-0.0",
        // Other scalars and strings. Paths are relative, inside the worker's scratch folder: a call
        // may create what it names (the fuzz runs as whoever runs the tests, root in CI).
        "nil", "true", "false", "\"\"", "\"abc\"", "\"mean\"", "\"sum\"", "\"float32\"", "\"int64\"", "\"out.safetensors\"", "\"out.pt\"",
        "\"missing/dir/x.png\"", "\"slides\"", "\"d4\"",
        // Lists as shapes (empty, zero, negative, huge), nested, ragged and mixed.
        "[]", "[0]", "[2, 3]", "[-1, 3]", "[0, 3]", "[3, -2]", "[4611686018427387904, 2]", "[65536, 65536]", "[1, 2, 3, 4]",
        "[[1, 2], [3, 4]]", "[[1], [2, 3]]", "[1.5, \"a\"]", "[t2, t2]", "[t0, t1]", "[m, conv]", "[nil]", "[[]]",
        // Dicts.
        "{}", "{\"a\": 1}", "{\"weight\": t2}", "{\"params\": m.parameters(), \"lr\": 0.5}",
        // Tensors: rank 0, 1, 2, 4, empty, int64, requiring grad, non-finite; the sparse map.
        "t0", "t1", "t2", "t4", "te", "ti", "tg", "tn", "sp", "zeros([1, 3, 8, 8])", "randn([4, 3])",
        // Objects and functions.
        "m", "conv", "seq", "sseq", "mil", "inp", "opt", "ds", "dl", "f", "fn() => 1", "print", "d", "s", "l",
    ]

    /// Receivers for methods and members: every fixture, tensors more often.
    static let receivers = ["t0", "t1", "t2", "t4", "te", "ti", "tg", "tn", "t2", "t4", "te", "t0",
                            "sp", "m", "conv", "seq", "sseq", "mil", "inp", "opt", "ds", "dl", "d", "s", "l", "f"]

    static let binaryOperators = ["+", "-", "*", "/", "//", "%", "**", "@", "==", "!=", "<", "<=", ">", ">=", "and", "or", "in"]

    let seed: UInt64
    let functions: [(name: String, parameters: [(name: String, required: Bool)])]
    let members: [String: [String]]

    /// The call sequence for `seed` over the bindings of `interp`, whose workspace holds the
    /// fixtures (their member names are read from it).
    public init(seed: UInt64, bindings interp: Interpreter) {
        self.seed = seed
        functions = interp.builtins.keys.sorted().filter { !Self.excluded.contains($0) }.map { name in
            (name, interp.builtins[name]!.signature.parameters.map { ($0.name, $0.defaultValue == nil) })
        }
        var members: [String: [String]] = [:]
        for r in Set(Self.receivers) {
            let names: [String]
            if let slot = interp.globals.scopes[0][r]?.slot {
                names = interp.memberNames(interp.globalFrame.slots[slot])
            } else {
                names = []
            }
            members[r] = Array(Set(names)).sorted()
        }
        self.members = members
    }

    /// The source of call `index`.
    public func call(_ index: Int) -> String {
        var rng = SplitMix(seed: seed &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15)
        let kind = rng.below(100)
        switch kind {
        case 0..<45: return functionCall(&rng)
        case 45..<70: return methodCall(&rng)
        case 70..<80:
            // A constructor's result called at once, as `Linear(-1, 7)(randn([2, 3, 4]))`.
            return functionCall(&rng) + "(" + argumentList(count: 1 + rng.below(2), &rng) + ")"
        case 80..<92:
            let a = rng.pick(Self.arguments), b = rng.pick(Self.arguments), op = rng.pick(Self.binaryOperators)
            return rng.below(8) == 0 ? "-\(a) \(op) \(b)" : "\(a) \(op) \(b)"
        default:
            let r = rng.pick(Self.receivers)
            switch rng.below(4) {
            case 0: return "\(r)[\(rng.pick(Self.arguments))]"
            case 1: return "\(r)[\(rng.pick(Self.arguments)):\(rng.pick(Self.arguments))]"
            case 2:
                guard let name = members[r].flatMap({ $0.isEmpty ? nil : rng.pick($0) }) else { return "\(r)[0]" }
                return "\(r).\(name) = \(rng.pick(Self.arguments))"
            default: return "\(r)[\(rng.pick(Self.arguments))] = \(rng.pick(Self.arguments))"
            }
        }
    }

    func functionCall(_ rng: inout SplitMix) -> String {
        var f = rng.pick(functions)
        if Self.rare.contains(f.name) && rng.below(20) != 0 { f = rng.pick(functions) }
        return f.name + "(" + arguments(for: f.parameters, &rng) + ")"
    }

    func methodCall(_ rng: inout SplitMix) -> String {
        let r = rng.pick(Self.receivers)
        guard let names = members[r], !names.isEmpty else { return "\(r)()" }
        let name = rng.pick(names)
        // Most members are methods; a property is read, or wrongly called.
        if rng.below(6) == 0 { return "\(r).\(name)" }
        return "\(r).\(name)(" + argumentList(count: rng.below(4), &rng) + ")"
    }

    /// Mostly the required arguments; sometimes one too few or too many, and optional ones by keyword.
    func arguments(for parameters: [(name: String, required: Bool)], _ rng: inout SplitMix) -> String {
        var count = parameters.filter(\.required).count
        switch rng.below(10) {
        case 0: count = max(0, count - 1)
        case 1: count += 1
        default: break
        }
        var parts = (0..<count).map { _ in rng.pick(Self.arguments) }
        let optional = parameters.dropFirst(min(count, parameters.count)).filter { !$0.required }
        if !optional.isEmpty {
            for _ in 0..<rng.below(3) { parts.append("\(rng.pick(optional).name): \(rng.pick(Self.arguments))") }
            // A name repeated, or one the function does not have, is the caller's error to report.
            if rng.below(20) == 0 { parts.append("no_such_parameter: 1") }
        }
        return parts.joined(separator: ", ")
    }

    func argumentList(count: Int, _ rng: inout SplitMix) -> String {
        (0..<count).map { _ in rng.pick(Self.arguments) }.joined(separator: ", ")
    }
}

/// SplitMix64: tiny, fast and good enough to pick arguments.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}
