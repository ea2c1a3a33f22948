public import FedRecModel
import FedRecTensor

/// A stable order of named parameters flattened into one `[Float]`: entry `k` occupies
/// `offset ..< offset + count` with `count == shape.reduce(1, *)`, entries back to back in order.
public struct ParameterLayout: Sendable, Hashable, Codable {
    public struct Entry: Sendable, Hashable, Codable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public let entries: [Entry]
    /// Total number of floats.
    public let count: Int

    public init(_ parameters: [(name: String, shape: [Int])]) {
        var entries: [Entry] = []
        var offset = 0
        for (name, shape) in parameters {
            precondition(shape.allSatisfy { $0 >= 0 }, "\(name): negative dimension")
            entries.append(Entry(name: name, shape: shape, offset: offset))
            offset += shape.reduce(1, *)
        }
        self.entries = entries
        self.count = offset
    }

    /// The user tower's layout: `UserTower.namedParameters` order (history embedding, mlp.0 weight and bias,
    /// mlp.2 weight and bias), model-file shapes.
    public static func userTower(_ configuration: TwoTowerConfiguration) -> ParameterLayout {
        let (n, d, h, i) = (
            configuration.itemCount, configuration.dimension, configuration.hiddenWidth, configuration.userInputWidth
        )
        return ParameterLayout([
            (UserTower.historyEmbeddingName, [n, d]), (UserTower.hiddenWeightName, [i, h]),
            (UserTower.hiddenBiasName, [h]),
            (UserTower.outputWeightName, [h, d]), (UserTower.outputBiasName, [d]),
        ])
    }

    public func entry(named name: String) -> Entry? { entries.first { $0.name == name } }
}

extension UserTower {
    /// Parameters as `[Matrix]` in layout order.
    var parameterMatrices: [Matrix] { [historyEmbedding, hiddenWeight, hiddenBias, outputWeight, outputBias] }

    /// All parameters flattened in `ParameterLayout.userTower` order.
    public func flattened() -> [Float] {
        var flat: [Float] = []
        flat.reserveCapacity(ParameterLayout.userTower(configuration).count)
        for matrix in parameterMatrices { flat.append(contentsOf: matrix.storage) }
        return flat
    }

    /// A tower of `configuration` whose parameters are `flat` (in `ParameterLayout.userTower` order).
    public init(configuration: TwoTowerConfiguration, flattened flat: [Float]) {
        let layout = ParameterLayout.userTower(configuration)
        precondition(
            flat.count == layout.count, "flat user tower has \(flat.count) values, layout needs \(layout.count)")
        func matrix(_ k: Int) -> Matrix {
            let e = layout.entries[k]
            let rows = e.shape.count == 2 ? e.shape[0] : 1
            return Matrix(
                rows: rows, columns: e.count / max(rows, 1), storage: Array(flat[e.offset..<(e.offset + e.count)]))
        }
        self.init(
            configuration: configuration, historyEmbedding: matrix(0), hiddenWeight: matrix(1), hiddenBias: matrix(2),
            outputWeight: matrix(3), outputBias: matrix(4))
    }

    /// `self - base`, flattened (the client's delta `local - global`).
    public func delta(from base: UserTower) -> [Float] {
        precondition(configuration == base.configuration, "towers of different configurations")
        var result = [Float](repeating: 0, count: ParameterLayout.userTower(configuration).count)
        var offset = 0
        result.withUnsafeMutableBufferPointer { out in
            for (local, global) in zip(parameterMatrices, base.parameterMatrices) {
                local.storage.withUnsafeBufferPointer { l in
                    global.storage.withUnsafeBufferPointer { g in
                        for j in 0..<l.count { out[offset + j] = l[j] - g[j] }
                    }
                }
                offset += local.count
            }
        }
        return result
    }
}

/// Helpers on flat parameter vectors.
public enum FlatVector {
    /// `local - global`.
    public static func delta(local: [Float], global: [Float]) -> [Float] {
        precondition(local.count == global.count, "vectors differ in length")
        return zip(local, global).map { $0 - $1 }
    }

    /// `x += alpha * y`.
    public static func add(_ y: [Float], scaledBy alpha: Float = 1, to x: inout [Float]) {
        precondition(x.count == y.count, "vectors differ in length")
        x.withUnsafeMutableBufferPointer { xs in
            y.withUnsafeBufferPointer { ys in
                for i in 0..<xs.count { xs[i] += alpha * ys[i] }
            }
        }
    }

    /// Euclidean norm (accumulated in Double).
    public static func l2Norm(_ x: [Float]) -> Double {
        x.withUnsafeBufferPointer { xs in
            var sum = 0.0
            for v in xs { sum += Double(v) * Double(v) }
            return sum.squareRoot()
        }
    }

    /// True when no element is infinite or NaN (`FastMath.allFinite`).
    public static func isFinite(_ x: [Float]) -> Bool { FastMath.allFinite(x) }
}
