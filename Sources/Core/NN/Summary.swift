// Summary.swift: a model summary as torchinfo prints it — one row per layer with its type, the
// shape of its output for a given input, and its parameter count, then the totals.

import Foundation
import CKernels

/// The summary of a module: rows (a layer each, depth first) and totals; `description` is the table.
public struct ModelSummary: CustomStringConvertible {
    public struct Row {
        /// The dotted name within the model ("layer1.0.conv1"); empty for the model itself.
        public var name: String
        public var typeName: String
        public var depth: Int
        /// The output's shape for the summary's input ("[1, 64, 112, 112]", "sparse [N, C]"), nil
        /// when no input was given or the layer did not run.
        public var outputShape: String?
        /// Parameters of this layer and everything under it that the table does not show.
        public var parameters: Int
        /// Whether the rows below it show its children (then its own parameters only are counted).
        public var expanded: Bool
        /// The first column: tree lines, name and type ("│    └─conv1 (Conv2d)").
        public var label: String
    }

    public var rows: [Row]
    public var totalParameters: Int
    public var trainableParameters: Int
    /// The input shape the output shapes were computed for.
    public var input: [Int]?

    /// Summarises `module` down to `depth` levels below it (torchinfo's default 3). With `input`,
    /// runs one forward on zeros of that shape without gradients, in evaluation mode (the running
    /// statistics of batch norm are not touched), to record each layer's output shape.
    public init(_ module: Module, input: [Int]? = nil, depth: Int = 3) throws {
        try Require.nonNegative(depth, "depth", op: "summary")
        final class Shapes { var byModule: [ObjectIdentifier: String] = [:] }
        let shapes = Shapes()
        if let input {
            let x = try Tensor.zeros(input)
            let wasTraining = module.training
            module.eval()
            defer { module.train(wasTraining) }
            try ModelSummary.recording.run(observing: { m, shape in shapes.byModule[ObjectIdentifier(m)] = shape }) {
                _ = try GradMode.noGrad { try module(x) }
            }
        }
        var rows: [Row] = []
        func visit(_ m: Module, name: String, label: String, indent: String, depth d: Int) {
            let expanded = !m.children.isEmpty && d < depth
            let own = m.parameters.reduce(0) { $0 + $1.parameter.value.count }
            rows.append(Row(name: name, typeName: m.typeName, depth: d, outputShape: shapes.byModule[ObjectIdentifier(m)],
                            parameters: expanded ? own : m.numParameters(), expanded: expanded, label: label))
            guard expanded else { return }
            for (i, (child, c)) in m.children.enumerated() {
                let last = i == m.children.count - 1
                visit(c, name: name.isEmpty ? child : name + "." + child, label: indent + (last ? "└─" : "├─") + "\(child) (\(c.typeName))",
                      indent: indent + (last ? "    " : "│   "), depth: d + 1)
            }
        }
        visit(module, name: "", label: module.typeName, indent: "", depth: 0)
        self.rows = rows
        totalParameters = module.numParameters()
        trainableParameters = module.allParameters().filter { $0.value.requiresGrad }.reduce(0) { $0 + $1.value.count }
        self.input = input
    }

    public var description: String {
        func grouped(_ n: Int) -> String {
            let digits = Array(String(n))
            return String(digits.enumerated().flatMap { i, c in (i > 0 && (digits.count - i) % 3 == 0) ? [",", c] : [c] })
        }
        let labels = rows.map(\.label)
        let params = rows.map { $0.expanded && $0.parameters == 0 ? "--" : grouped($0.parameters) }
        let shapes = rows.map { $0.outputShape ?? "--" }
        let c0 = max(16, labels.map(\.count).max() ?? 0) + 2
        let c1 = max(14, shapes.map(\.count).max() ?? 0) + 2
        let c2 = max(8, params.map(\.count).max() ?? 0)
        func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(0, w - s.count)) }
        func padLeft(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
        let showShapes = input != nil
        let width = c0 + (showShapes ? c1 : 0) + c2
        let rule = String(repeating: "=", count: width)
        var lines = [rule, pad("Layer (type)", c0) + (showShapes ? pad("Output shape", c1) : "") + padLeft("Param #", c2), rule]
        for i in rows.indices {
            lines.append(pad(labels[i], c0) + (showShapes ? pad(shapes[i], c1) : "") + padLeft(params[i], c2))
        }
        lines.append(rule)
        lines.append("Total params: \(grouped(totalParameters))")
        lines.append("Trainable params: \(grouped(trainableParameters))")
        lines.append("Non-trainable params: \(grouped(totalParameters - trainableParameters))")
        lines.append(String(format: "Params size (MB): %.2f", Double(totalParameters * 4) / 1e6))
        if let input {
            lines.append("Input size: \(shapeString(input)) " + String(format: "(%.2f MB)", Double(input.reduce(1, *) * 4) / 1e6))
        }
        lines.append(rule)
        return lines.joined(separator: "\n")
    }

    /// Records layer outputs while a summary runs its forward; one summary at a time.
    static let recording = Recording()

    /// The observer of layer outputs, behind a lock: forwards on other threads see it only while a
    /// summary runs, and a second summary waits for the first.
    final class Recording: @unchecked Sendable {
        private let lock = NSLock(), running = NSLock()
        private var observer: ((Module, String) -> Void)? = nil

        func run<R>(observing o: @escaping (Module, String) -> Void, _ body: () throws -> R) rethrows -> R {
            running.lock()
            defer { running.unlock() }
            lock.lock(); observer = o; lock.unlock()
            smil_summary_set(1)
            defer { smil_summary_set(0); lock.lock(); observer = nil; lock.unlock() }
            return try body()
        }

        func current() -> ((Module, String) -> Void)? {
            lock.lock()
            defer { lock.unlock() }
            return observer
        }
    }

    /// Called by modules after their forward: one relaxed atomic load when no summary is recording.
    @inline(__always) static func observe(_ m: Module, _ shape: @autoclosure () -> String) {
        guard smil_summary_recording() != 0, let o = recording.current() else { return }
        o(m, shape())
    }
}
