// SparseTensor.swift: a 2-D sparse map — active sites plus an N x C feature matrix that takes part
// in autograd — and its conversion to a dense tensor.

/// Features at the active sites of a batch of 2-D maps. `features` row i belongs to site i of
/// `sites`. Layers that keep the sites share the same `SiteSet`, and with it the cached rulebooks.
public struct SparseTensor {
    public let sites: SiteSet
    /// `[N, C]`, differentiable.
    public var features: Tensor

    public init(sites: SiteSet, features: Tensor) throws {
        guard features.rank == 2, features.shape[0] == sites.count else {
            throw CoreError.shapeMismatch(op: "sparse_tensor", "features of shape \(shapeString(features.shape)) do not fit \(sites.count) sites (expected [\(sites.count), C])")
        }
        self.sites = sites
        self.features = features
    }

    public var channels: Int { features.shape[1] }
    public var spatialSize: (rows: Int, cols: Int) { sites.spatialSize }
    public var batchSize: Int { sites.batchSize }
    /// The sites' (row, col, batch) as `[N, 3]`.
    public var coordinates: IntTensor { sites.coordinates }

    /// The same map as a dense `[batch, C, rows, cols]` tensor, zeros where inactive;
    /// differentiable (the gradient is read back at the active sites).
    public func toDense() throws -> Tensor {
        let (h, w) = sites.spatialSize
        let b = sites.batchSize, c = channels, n = sites.count
        let cells = b * c * h * w
        guard cells <= 1 << 31 else {
            throw CoreError.invalidArgument(op: "to_dense", "a dense [\(b), \(c), \(h), \(w)] map would hold \(cells) values")
        }
        var dense = try Tensor.zeros([b, c, h, w])
        let f = features.detached(), s = sites
        dense.withUnsafeMutableBufferPointer { d in
            for i in 0..<n {
                let base = Int(s.batches[i]) * c * h * w + Int(s.rows[i]) * w + Int(s.cols[i])
                for j in 0..<c { d[base + j * h * w] = f[flat: i * c + j] }
            }
        }
        return dense.recorded("to_dense", [features]) { g in
            var gf = Tensor(uninitializedShape: [n, c])
            let gp = g.storage.pointer
            gf.withUnsafeMutableBufferPointer { out in
                for i in 0..<n {
                    let base = Int(s.batches[i]) * c * h * w + Int(s.rows[i]) * w + Int(s.cols[i])
                    for j in 0..<c { out[i * c + j] = gp[base + j * h * w] }
                }
            }
            return [gf]
        }
    }
}
