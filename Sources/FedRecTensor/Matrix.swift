/// A dense, row-major matrix of `Float`.
///
/// Invariant: `storage.count == rows * columns`. Element `(r, c)` lives at `storage[r * columns + c]`.
/// A vector is a matrix with one row. Value semantics (copy-on-write through `Array`).
public struct Matrix: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public var storage: [Float]

    /// A matrix filled with `value`.
    public init(rows: Int, columns: Int, repeating value: Float = 0) {
        precondition(rows >= 0 && columns >= 0, "matrix dimensions must be non-negative")
        self.rows = rows
        self.columns = columns
        self.storage = [Float](repeating: value, count: rows * columns)
    }

    /// A matrix over existing row-major `storage`.
    public init(rows: Int, columns: Int, storage: [Float]) {
        precondition(rows >= 0 && columns >= 0, "matrix dimensions must be non-negative")
        precondition(storage.count == rows * columns, "storage holds \(storage.count) values, shape needs \(rows * columns)")
        self.rows = rows
        self.columns = columns
        self.storage = storage
    }

    public var count: Int { storage.count }
    public var shape: (rows: Int, columns: Int) { (rows, columns) }

    public subscript(row: Int, column: Int) -> Float {
        get { storage[row * columns + column] }
        set { storage[row * columns + column] = newValue }
    }

    /// A copy of row `r`.
    public func row(_ r: Int) -> [Float] {
        Array(storage[(r * columns)..<((r + 1) * columns)])
    }

    /// The matrix whose row `p` is row `order[p]` of this one (a row permutation or selection). Every index of
    /// `order` must lie in `0..<rows`: callers check it (this target drops preconditions, `-Ounchecked`).
    public func gatheringRows(_ order: [Int]) -> Matrix {
        var gathered = [Float](repeating: 0, count: order.count * columns)
        gathered.withUnsafeMutableBufferPointer { target in
            storage.withUnsafeBufferPointer { source in
                for (p, r) in order.enumerated() {
                    for c in 0..<columns { target[p * columns + c] = source[r * columns + c] }
                }
            }
        }
        return Matrix(rows: order.count, columns: columns, storage: gathered)
    }

    /// Sets every element to zero without reallocating.
    public mutating func zero() {
        storage.withUnsafeMutableBufferPointer { buffer in
            buffer.update(repeating: 0)
        }
    }

    /// True when every element is finite (no NaN, no infinity).
    public var isFinite: Bool {
        storage.allSatisfy { $0.isFinite }
    }
}
