/// A gradient for an embedding table in which only some rows are non-zero.
///
/// Invariants: `rowIndices` holds distinct rows of a `tableRows x columns` table in order of first touch;
/// the gradient of `rowIndices[s]` lives at `values[s * columns ..< (s + 1) * columns]`; every other row is zero.
/// `reset()` keeps the capacity, so a reused gradient allocates nothing once it has seen its largest batch.
public struct RowSparseGradient: Sendable, Equatable {
    public let tableRows: Int
    public let columns: Int
    public private(set) var rowIndices: [Int32]
    public internal(set) var values: [Float]
    /// `slotOfRow[r]` is the slot of row `r`, or -1 when the row is untouched.
    var slotOfRow: [Int32]

    public init(tableRows: Int, columns: Int) {
        precondition(tableRows >= 0 && columns >= 0, "gradient dimensions must be non-negative")
        self.tableRows = tableRows
        self.columns = columns
        self.rowIndices = []
        self.values = []
        self.slotOfRow = [Int32](repeating: -1, count: tableRows)
    }

    /// Number of touched rows.
    public var touchedRowCount: Int { rowIndices.count }

    /// Forgets every touched row (keeps the capacity).
    public mutating func reset() {
        slotOfRow.withUnsafeMutableBufferPointer { slots in
            for row in rowIndices { slots[Int(row)] = -1 }
        }
        rowIndices.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
    }

    /// The slot of `row`, creating a zero row when it is new.
    @discardableResult
    public mutating func slot(for row: Int) -> Int {
        precondition(row >= 0 && row < tableRows, "row \(row) outside a table of \(tableRows) rows")
        let existing = slotOfRow[row]
        if existing >= 0 { return Int(existing) }
        let slot = rowIndices.count
        slotOfRow[row] = Int32(slot)
        rowIndices.append(Int32(row))
        values.append(contentsOf: repeatElement(0, count: columns))
        return slot
    }

    /// Touches every row of the table, in order (a dense gradient in row-sparse form).
    public mutating func touchAllRows() {
        for row in 0..<tableRows { slot(for: row) }
    }

    /// The slot of `row`, or nil when it is untouched.
    public func existingSlot(for row: Int) -> Int? {
        let slot = slotOfRow[row]
        return slot >= 0 ? Int(slot) : nil
    }

    /// Mutable access to the gradient values (slot-major).
    public mutating func withUnsafeMutableValues<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows
        -> R
    {
        try values.withUnsafeMutableBufferPointer { try body($0) }
    }

    /// Adds `scale * gradient` of one row.
    public mutating func add(row: Int, _ gradient: UnsafePointer<Float>, scale: Float = 1) {
        let slot = slot(for: row)
        let d = columns
        values.withUnsafeMutableBufferPointer { v in
            let target = v.baseAddress! + slot * d
            for j in 0..<d { target[j] += scale * gradient[j] }
        }
    }

    /// Adds source row `i` (`count` rows of `columns` floats) to table row `rows[i]` (nil: row `i`).
    public mutating func addRows(_ rows: [Int32]?, count: Int, from source: UnsafePointer<Float>) {
        for i in 0..<count { slot(for: rows.map { Int($0[i]) } ?? i) }
        let d = columns
        slotOfRow.withUnsafeBufferPointer { slots in
            values.withUnsafeMutableBufferPointer { v in
                for i in 0..<count {
                    let row = rows.map { Int($0[i]) } ?? i
                    let dst = v.baseAddress! + Int(slots[row]) * d, src = source + i * d
                    for j in 0..<d { dst[j] += src[j] }
                }
            }
        }
    }

    /// The gradient of one table row (zeros when untouched).
    public func row(_ row: Int) -> [Float] {
        guard let slot = existingSlot(for: row) else { return [Float](repeating: 0, count: columns) }
        return Array(values[(slot * columns)..<((slot + 1) * columns)])
    }

    /// A dense `tableRows x columns` copy.
    public func dense() -> Matrix {
        var result = Matrix(rows: tableRows, columns: columns)
        for (slot, row) in rowIndices.enumerated() {
            for j in 0..<columns { result[Int(row), j] = values[slot * columns + j] }
        }
        return result
    }

    /// Scales every stored value.
    public mutating func scale(by factor: Float) {
        values.withUnsafeMutableBufferPointer { v in
            for i in v.indices { v[i] *= factor }
        }
    }

    public static func == (lhs: RowSparseGradient, rhs: RowSparseGradient) -> Bool {
        lhs.tableRows == rhs.tableRows && lhs.columns == rhs.columns && lhs.rowIndices == rhs.rowIndices
            && lhs.values == rhs.values
    }
}
