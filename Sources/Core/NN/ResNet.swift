// ResNet.swift: torchvision's ResNets (resnet18/34/50, wide_resnet50_2) — same architecture,
// initialisation and state_dict key names, so torchvision weights load unchanged.

/// The block of resnet18/34: two 3x3 convolutions and a shortcut.
public final class BasicBlock: Module {
    static let expansion = 1
    let conv1, conv2: Conv2d
    let bn1, bn2: BatchNorm2d
    let downsample: Sequential?

    init(inplanes: Int, planes: Int, stride: Int, downsample: Sequential?) throws {
        conv1 = try Conv2d(inplanes, planes, kernelSize: 3, stride: stride, padding: 1, bias: false)
        bn1 = try BatchNorm2d(planes)
        conv2 = try Conv2d(planes, planes, kernelSize: 3, padding: 1, bias: false)
        bn2 = try BatchNorm2d(planes)
        self.downsample = downsample
        super.init()
        registerChild("conv1", conv1)
        registerChild("bn1", bn1)
        registerChild("relu", ReLU())
        registerChild("conv2", conv2)
        registerChild("bn2", bn2)
        if let d = downsample { registerChild("downsample", d) }
    }

    public override func forward(_ x: Tensor) throws -> Tensor {
        var out = try bn1.forward(conv1(x), relu: true)
        out = try bn2(conv2(out))
        let identity = try downsample?(x) ?? x
        return try out.add(identity).relu()
    }
}

/// The block of resnet50 and wider: 1x1 reduce, 3x3 (strided), 1x1 expand (x4), and a shortcut.
public final class Bottleneck: Module {
    static let expansion = 4
    let conv1, conv2, conv3: Conv2d
    let bn1, bn2, bn3: BatchNorm2d
    let downsample: Sequential?

    init(inplanes: Int, planes: Int, stride: Int, downsample: Sequential?, baseWidth: Int) throws {
        let width = planes * baseWidth / 64
        conv1 = try Conv2d(inplanes, width, kernelSize: 1, bias: false)
        bn1 = try BatchNorm2d(width)
        conv2 = try Conv2d(width, width, kernelSize: 3, stride: stride, padding: 1, bias: false)
        bn2 = try BatchNorm2d(width)
        conv3 = try Conv2d(width, planes * Bottleneck.expansion, kernelSize: 1, bias: false)
        bn3 = try BatchNorm2d(planes * Bottleneck.expansion)
        self.downsample = downsample
        super.init()
        registerChild("conv1", conv1)
        registerChild("bn1", bn1)
        registerChild("conv2", conv2)
        registerChild("bn2", bn2)
        registerChild("conv3", conv3)
        registerChild("bn3", bn3)
        registerChild("relu", ReLU())
        if let d = downsample { registerChild("downsample", d) }
    }

    public override func forward(_ x: Tensor) throws -> Tensor {
        var out = try bn1.forward(conv1(x), relu: true)
        out = try bn2.forward(conv2(out), relu: true)
        out = try bn3(conv3(out))
        let identity = try downsample?(x) ?? x
        return try out.add(identity).relu()
    }
}

/// torchvision's ResNet: conv1 7x7/2, bn1, relu, maxpool 3/2, layer1-4, avgpool, fc.
/// With `embedder: true`, `fc` is `Identity` and the output is the pooled feature vector.
public final class ResNet: Module {
    public enum Block { case basic, bottleneck }
    public let featureDimension: Int
    let conv1: Conv2d
    let bn1: BatchNorm2d
    let maxpool: MaxPool2d
    let layers: [Sequential]
    let avgpool: AdaptiveAvgPool2d
    public let fc: Module

    /// `truncate` (1-4, with `embedder`) keeps `layer1` ... `layer<truncate>` and pools after it, as
    /// CLAM's `resnet50_trunc` keeps ResNet-50 up to `layer3` for 1024-D features.
    public init(block: Block, layers counts: [Int], numClasses: Int = 1000, widthPerGroup: Int = 64, embedder: Bool = false,
                truncate: Int? = nil) throws {
        try Require.positive(numClasses, "num_classes", op: "ResNet")
        guard counts.count == 4, counts.allSatisfy({ (1...64).contains($0) }) else {
            throw CoreError.invalidArgument(op: "ResNet", "layers must be four block counts from 1 to 64, got \(counts)")
        }
        try Require.positive(widthPerGroup, "width_per_group", op: "ResNet")
        if let t = truncate {
            guard (1...4).contains(t), embedder else {
                throw CoreError.invalidArgument(op: "ResNet", "truncate must name layer1-layer4 of an embedder (embedder: true), got \(t)")
            }
        }
        let kept = truncate ?? 4
        let expansion = block == .basic ? BasicBlock.expansion : Bottleneck.expansion
        var inplanes = 64
        conv1 = try Conv2d(3, 64, kernelSize: 7, stride: 2, padding: 3, bias: false)
        bn1 = try BatchNorm2d(64)
        maxpool = try MaxPool2d(3, stride: 2, padding: 1)
        var built: [Sequential] = []
        for (i, (planes, count)) in zip([64, 128, 256, 512], counts).prefix(kept).enumerated() {
            let stride = i == 0 ? 1 : 2
            var downsample: Sequential? = nil
            if stride != 1 || inplanes != planes * expansion {
                downsample = Sequential([try Conv2d(inplanes, planes * expansion, kernelSize: 1, stride: stride, bias: false),
                                         try BatchNorm2d(planes * expansion)])
            }
            var blocks: [Module] = []
            for j in 0..<count {
                let s = j == 0 ? stride : 1, d = j == 0 ? downsample : nil
                switch block {
                case .basic: blocks.append(try BasicBlock(inplanes: inplanes, planes: planes, stride: s, downsample: d))
                case .bottleneck: blocks.append(try Bottleneck(inplanes: inplanes, planes: planes, stride: s, downsample: d, baseWidth: widthPerGroup))
                }
                inplanes = planes * expansion
            }
            built.append(Sequential(blocks))
        }
        layers = built
        avgpool = try AdaptiveAvgPool2d(1)
        featureDimension = [64, 128, 256, 512][kept - 1] * expansion
        fc = embedder ? Identity() : try Linear(512 * expansion, numClasses)
        super.init()
        registerChild("conv1", conv1)
        registerChild("bn1", bn1)
        registerChild("relu", ReLU())
        registerChild("maxpool", maxpool)
        for (i, l) in layers.enumerated() { registerChild("layer\(i + 1)", l) }
        registerChild("avgpool", avgpool)
        registerChild("fc", fc)
        // torchvision: kaiming_normal_(fan_out, relu) for convolutions; BN weight 1, bias 0.
        for (_, p) in namedParameters() where p.value.rank == 4 {
            let fanOut = p.value.shape[0] * p.value.shape[2] * p.value.shape[3]
            p.value.assign(try Tensor.randn(p.value.shape, std: (2 / Float(fanOut)).squareRoot()))
        }
    }

    public override func forward(_ x: Tensor) throws -> Tensor {
        guard x.rank == 4, x.shape[1] == 3 else {
            throw CoreError.shapeMismatch(op: "resnet", "expected images [N, 3, H, W], got \(shapeString(x.shape))")
        }
        var y = try maxpool(bn1.forward(conv1(x), relu: true))
        for l in layers { y = try l(y) }
        y = try avgpool(y).flattened(start: 1)
        return try fc(y)
    }

    public override var typeName: String { "ResNet" }
}

/// torchvision's `resnet18`.
public func resnet18(numClasses: Int = 1000, embedder: Bool = false) throws -> ResNet {
    try ResNet(block: .basic, layers: [2, 2, 2, 2], numClasses: numClasses, embedder: embedder)
}
/// torchvision's `resnet34`.
public func resnet34(numClasses: Int = 1000, embedder: Bool = false) throws -> ResNet {
    try ResNet(block: .basic, layers: [3, 4, 6, 3], numClasses: numClasses, embedder: embedder)
}
/// torchvision's `resnet50`; `truncate: 3` with `embedder` is CLAM's `resnet50_trunc` (1024-D).
public func resnet50(numClasses: Int = 1000, embedder: Bool = false, truncate: Int? = nil) throws -> ResNet {
    try ResNet(block: .bottleneck, layers: [3, 4, 6, 3], numClasses: numClasses, embedder: embedder, truncate: truncate)
}
/// torchvision's `wide_resnet50_2` (bottleneck width doubled).
public func wideResnet50_2(numClasses: Int = 1000, embedder: Bool = false) throws -> ResNet {
    try ResNet(block: .bottleneck, layers: [3, 4, 6, 3], numClasses: numClasses, widthPerGroup: 128, embedder: embedder)
}
