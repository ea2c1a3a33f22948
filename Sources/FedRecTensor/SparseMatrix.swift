/// A sparse matrix in compressed-sparse-row (CSR) form, used for content features
/// (multi-hot genres, hashed title tokens and tags, demographic one-hots).
///
/// Invariants: `rowOffsets.count == rows + 1`, `rowOffsets[0] == 0`, offsets non-decreasing,
/// `rowOffsets[rows] == indices.count == values.count`, every index in `0..<columns`.
public struct SparseMatrix: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public let rowOffsets: [Int32]
    public let indices: [Int32]
    public let values: [Float]

    public init(rows: Int, columns: Int, rowOffsets: [Int32], indices: [Int32], values: [Float]) {
        precondition(rowOffsets.count == rows + 1, "CSR needs rows + 1 offsets")
        precondition(rowOffsets.first == 0 && Int(rowOffsets.last!) == indices.count, "CSR offsets must span indices")
        precondition(indices.count == values.count, "CSR indices and values differ in length")
        precondition(indices.allSatisfy { $0 >= 0 && Int($0) < columns }, "CSR column index out of range")
        self.rows = rows
        self.columns = columns
        self.rowOffsets = rowOffsets
        self.indices = indices
        self.values = values
    }

    /// Builds a CSR matrix from per-row `(column, value)` lists.
    public init(columns: Int, rows entries: [[(column: Int, value: Float)]]) {
        var offsets: [Int32] = [0]
        offsets.reserveCapacity(entries.count + 1)
        var indices: [Int32] = []
        var values: [Float] = []
        for row in entries {
            for entry in row {
                indices.append(Int32(entry.column))
                values.append(entry.value)
            }
            offsets.append(Int32(indices.count))
        }
        self.init(rows: entries.count, columns: columns, rowOffsets: offsets, indices: indices, values: values)
    }

    /// An empty `rows x 0` matrix (a data set without such features).
    public static func empty(rows: Int) -> SparseMatrix {
        SparseMatrix(rows: rows, columns: 0, rowOffsets: [Int32](repeating: 0, count: rows + 1), indices: [], values: [])
    }

    public var nonZeroCount: Int { indices.count }

    /// The `(column, value)` pairs of row `r`.
    public func row(_ r: Int) -> [(column: Int, value: Float)] {
        let start = Int(rowOffsets[r])
        let end = Int(rowOffsets[r + 1])
        return (start..<end).map { (Int(indices[$0]), values[$0]) }
    }

    /// The matrix whose row `p` is row `order[p]` of this one; every index of `order` must lie in `0..<rows`.
    public func gatheringRows(_ order: [Int]) -> SparseMatrix {
        SparseMatrix(columns: columns, rows: order.map { row($0) })
    }

    /// A dense copy (for tests and small matrices).
    public func dense() -> Matrix {
        var m = Matrix(rows: rows, columns: columns)
        for r in 0..<rows {
            for k in Int(rowOffsets[r])..<Int(rowOffsets[r + 1]) {
                m[r, Int(indices[k])] += values[k]
            }
        }
        return m
    }
}
