/// Per-example bags stored as shared groups: example `e`'s bag is the items of group `exampleGroups[e]` with the
/// one occurrence at position `excludedPositions[e]` of that group left out (`-1`: nothing left out).
///
/// The leave-one-out training examples of one user (target = one known item, history = the other known items)
/// share one group, so a mean embedding bag costs one sum per group plus one row per example instead of one
/// sum per example. Invariants: `exampleGroups.count == excludedPositions.count`; every `exampleGroups[e]` is
/// `< groups.count`; every `excludedPositions[e]` is `-1` or a position `< |group|`.
public struct LeaveOneOutBags: Sendable, Equatable {
    public private(set) var groups: IndexBags
    public private(set) var exampleGroups: [Int32]
    public private(set) var excludedPositions: [Int32]

    public init() {
        groups = IndexBags()
        exampleGroups = []
        excludedPositions = []
    }

    /// Number of examples (bags).
    public var count: Int { exampleGroups.count }
    public var groupCount: Int { groups.count }

    /// Removes every group and example, keeping the capacity.
    public mutating func removeAll() {
        groups.removeAll()
        exampleGroups.removeAll(keepingCapacity: true)
        excludedPositions.removeAll(keepingCapacity: true)
    }

    /// Appends a group of items and returns its index.
    @discardableResult
    public mutating func appendGroup(_ items: ArraySlice<Int32>) -> Int {
        groups.append(items)
        return groups.count - 1
    }

    /// Appends a group made of `first` followed by `second` and returns its index.
    @discardableResult
    public mutating func appendGroup(_ first: ArraySlice<Int32>, followedBy second: ArraySlice<Int32>) -> Int {
        groups.append(first, followedBy: second)
        return groups.count - 1
    }

    /// Appends the example whose bag is group `group` without its item at `excluding` (nil: the whole group).
    public mutating func appendExample(group: Int, excluding position: Int?) {
        precondition(group >= 0 && group < groups.count, "group \(group) out of range")
        if let position {
            let size = Int(groups.offsets[group + 1] - groups.offsets[group])
            precondition(position >= 0 && position < size, "excluded position \(position) outside a group of \(size)")
        }
        exampleGroups.append(Int32(group))
        excludedPositions.append(Int32(position ?? -1))
    }

    /// The item left out of example `e`'s bag (nil: none).
    public func excludedItem(_ e: Int) -> Int32? {
        let p = excludedPositions[e]
        return p < 0 ? nil : groups.indices[Int(groups.offsets[Int(exampleGroups[e])]) + Int(p)]
    }

    /// The bags one per example, materialised (`O(sum of bag sizes)`; tests and per-example consumers).
    public var perExampleBags: IndexBags {
        var bags = IndexBags()
        for e in 0..<count {
            let items = groups.bag(Int(exampleGroups[e]))
            let p = Int(excludedPositions[e])
            if p < 0 {
                bags.append(items)
            } else {
                let cut = items.startIndex + p
                bags.append(items[..<cut], followedBy: items[(cut + 1)...])
            }
        }
        return bags
    }
}

// MARK: - Embedding bag (mean) over leave-one-out groups

extension EmbeddingBagMean {
    /// Scratch space of the grouped forward and backward passes (reused between steps).
    public struct GroupWorkspace: Sendable {
        /// Per group, the sum of its rows (forward).
        var sums = Matrix(rows: 0, columns: 0)
        /// Per group, `sum over its examples e of outputGradient[e] / |bag e|` (backward).
        var gradients = Matrix(rows: 0, columns: 0)
        /// Per group (backward): -2 no example with a non-empty bag; -1 every row is in some bag; `t >= 0` every
        /// example leaves out item `t` (a row equal to `t` occurring once in the group is then in no bag).
        var excluded: [Int32] = []
        public init() {}
    }

    /// `output[e] = mean(bag e)`, from one row sum `S_g` per group: `(S_g - table[left-out item]) / (|g| - 1)`,
    /// or `S_g / |g|` when nothing is left out; an empty bag gives the zero vector. Equals the per-example
    /// `forward(table:bags:into:)` on `bags.perExampleBags` up to float rounding (exactly, when nothing is
    /// left out). Cost `O((sum of group sizes + examples) x d)`.
    public static func forward(
        table: Matrix, bags: LeaveOneOutBags, workspace: inout GroupWorkspace, into output: inout Matrix
    ) {
        let d = table.columns
        let groups = bags.groups
        workspace.sums.reshape(rows: groups.count, columns: d)
        output.reshape(rows: bags.count, columns: d)
        table.storage.withUnsafeBufferPointer { t in
            groups.offsets.withUnsafeBufferPointer { offsets in
                groups.indices.withUnsafeBufferPointer { indices in
                    workspace.sums.storage.withUnsafeMutableBufferPointer { sums in
                        for g in 0..<groups.count {
                            let s = sums.baseAddress! + g * d
                            for j in 0..<d { s[j] = 0 }
                            for k in Int(offsets[g])..<Int(offsets[g + 1]) {
                                let row = Int(indices[k])
                                precondition(row >= 0 && row < table.rows, "bag index \(row) out of range")
                                let src = t.baseAddress! + row * d
                                for j in 0..<d { s[j] += src[j] }
                            }
                        }
                    }
                    workspace.sums.storage.withUnsafeBufferPointer { sums in
                        bags.exampleGroups.withUnsafeBufferPointer { exampleGroups in
                            bags.excludedPositions.withUnsafeBufferPointer { excluded in
                                output.storage.withUnsafeMutableBufferPointer { out in
                                    for e in 0..<exampleGroups.count {
                                        let g = Int(exampleGroups[e])
                                        let start = Int(offsets[g])
                                        let p = Int(excluded[e])
                                        let size = Int(offsets[g + 1]) - start - (p >= 0 ? 1 : 0)
                                        let o = out.baseAddress! + e * d
                                        guard size > 0 else {
                                            for j in 0..<d { o[j] = 0 }
                                            continue
                                        }
                                        let s = sums.baseAddress! + g * d
                                        let scale = 1 / Float(size)
                                        if p >= 0 {
                                            let left = t.baseAddress! + Int(indices[start + p]) * d
                                            for j in 0..<d { o[j] = (s[j] - left[j]) * scale }
                                        } else {
                                            for j in 0..<d { o[j] = s[j] * scale }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Scatter-adds `outputGradient[e] / |bag e|` into every row of bag `e` (row-sparse, accumulating), as
    /// `G_g = sum over e in g of outputGradient[e] / |bag e|` added to every row of group `g`, then
    /// `-outputGradient[e] / |bag e|` added to the row left out of bag `e`. Touches exactly the rows that
    /// occur in some bag (as the per-example `backward(outputGradient:bags:into:)`, so lazy optimizers move the
    /// same rows). Cost `O((sum of group sizes + examples) x d)`.
    public static func backward(
        outputGradient: Matrix, bags: LeaveOneOutBags, workspace: inout GroupWorkspace,
        into gradient: inout RowSparseGradient
    ) {
        let d = gradient.columns
        let groups = bags.groups
        precondition(outputGradient.rows == bags.count && outputGradient.columns == d, "embedding-bag gradient shape")
        workspace.gradients.reshape(rows: groups.count, columns: d, zeroed: true)
        workspace.excluded.removeAll(keepingCapacity: true)
        workspace.excluded.append(contentsOf: repeatElement(-2, count: groups.count))
        // G_g and, per group, which rows are in some bag.
        outputGradient.storage.withUnsafeBufferPointer { gOut in
            groups.offsets.withUnsafeBufferPointer { offsets in
                groups.indices.withUnsafeBufferPointer { indices in
                    bags.exampleGroups.withUnsafeBufferPointer { exampleGroups in
                        bags.excludedPositions.withUnsafeBufferPointer { excluded in
                            workspace.excluded.withUnsafeMutableBufferPointer { state in
                                workspace.gradients.storage.withUnsafeMutableBufferPointer { sums in
                                    for e in 0..<exampleGroups.count {
                                        let g = Int(exampleGroups[e])
                                        let start = Int(offsets[g])
                                        let p = Int(excluded[e])
                                        let size = Int(offsets[g + 1]) - start - (p >= 0 ? 1 : 0)
                                        guard size > 0 else { continue }
                                        let item = p >= 0 ? indices[start + p] : -1
                                        if state[g] == -2 {
                                            state[g] = item
                                        } else if state[g] != item {
                                            state[g] = -1
                                        }
                                        let scale = 1 / Float(size)
                                        let src = gOut.baseAddress! + e * d, dst = sums.baseAddress! + g * d
                                        for j in 0..<d { dst[j] += scale * src[j] }
                                    }
                                    // A common left-out item occurring more than once stays in every bag.
                                    for g in 0..<groups.count where state[g] >= 0 {
                                        var occurrences = 0
                                        for k in Int(offsets[g])..<Int(offsets[g + 1]) where indices[k] == state[g] {
                                            occurrences += 1
                                        }
                                        if occurrences > 1 { state[g] = -1 }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Assign slots first so the value buffer no longer moves while we accumulate.
        groups.offsets.withUnsafeBufferPointer { offsets in
            groups.indices.withUnsafeBufferPointer { indices in
                for g in 0..<groups.count where workspace.excluded[g] != -2 {
                    let skip = workspace.excluded[g]
                    for k in Int(offsets[g])..<Int(offsets[g + 1]) where indices[k] != skip {
                        gradient.slot(for: Int(indices[k]))
                    }
                }
            }
        }
        outputGradient.storage.withUnsafeBufferPointer { gOut in
            groups.offsets.withUnsafeBufferPointer { offsets in
                groups.indices.withUnsafeBufferPointer { indices in
                    bags.exampleGroups.withUnsafeBufferPointer { exampleGroups in
                        bags.excludedPositions.withUnsafeBufferPointer { excluded in
                            workspace.excluded.withUnsafeBufferPointer { state in
                                workspace.gradients.storage.withUnsafeBufferPointer { sums in
                                    gradient.slotOfRow.withUnsafeBufferPointer { slots in
                                        gradient.values.withUnsafeMutableBufferPointer { values in
                                            for g in 0..<groups.count where state[g] != -2 {
                                                let src = sums.baseAddress! + g * d
                                                for k in Int(offsets[g])..<Int(offsets[g + 1]) where indices[k] != state[g] {
                                                    let dst = values.baseAddress! + Int(slots[Int(indices[k])]) * d
                                                    for j in 0..<d { dst[j] += src[j] }
                                                }
                                            }
                                            for e in 0..<exampleGroups.count {
                                                let g = Int(exampleGroups[e])
                                                let start = Int(offsets[g])
                                                let p = Int(excluded[e])
                                                guard p >= 0 else { continue }
                                                let size = Int(offsets[g + 1]) - start - 1
                                                let item = indices[start + p]
                                                guard size > 0, item != state[g] else { continue }
                                                let scale = 1 / Float(size)
                                                let src = gOut.baseAddress! + e * d
                                                let dst = values.baseAddress! + Int(slots[Int(item)]) * d
                                                for j in 0..<d { dst[j] -= scale * src[j] }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
