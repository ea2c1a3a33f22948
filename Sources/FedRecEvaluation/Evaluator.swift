public import FedRecData
import FedRecTensor

/// Runs the `fedrec-eval-v1` scoring protocol: for each user with at least one held-out item, score
/// the whole catalogue, exclude the user's known items, take the top `max(cutoffs)` (ties by item
/// index) and record where the held-out items landed.
///
/// Invariants: `cutoffs` is non-empty, strictly increasing and positive; `batchSize > 0`.
public struct Evaluator: Sendable {
    /// The K values reported, ascending.
    public let cutoffs: [Int]
    /// Users scored per `Scorer` call (one `users x catalogue` score matrix is alive at a time).
    public let batchSize: Int

    /// The protocol's cutoffs.
    public static let defaultCutoffs = [10, 20, 50]

    /// - Parameter cutoffs: any positive K values; sorted and de-duplicated here.
    public init(cutoffs: [Int] = Evaluator.defaultCutoffs, batchSize: Int = 256) {
        let sorted = Array(Set(cutoffs)).sorted()
        precondition(!sorted.isEmpty && sorted[0] > 0, "cutoffs must be positive and non-empty, got \(cutoffs)")
        precondition(batchSize > 0, "batch size must be positive, got \(batchSize)")
        self.cutoffs = sorted
        self.batchSize = batchSize
    }

    /// Per-user outcomes, in the order of `users`, for every user with at least one held-out item
    /// (the others are skipped, as the protocol says).
    ///
    /// - Parameters:
    ///   - scorer: produces scores over `itemCount` items.
    ///   - users: the fold; every known and held-out index must lie in `0..<itemCount`.
    ///   - itemCount: the catalogue size.
    public func outcomes(of scorer: some Scorer, on users: [FoldUser], itemCount: Int) -> [UserOutcome] {
        precondition(itemCount > 0, "the catalogue is empty")
        let evaluated = users.filter { !$0.heldOut.isEmpty }
        let listLength = cutoffs[cutoffs.count - 1]
        var outcomes: [UserOutcome] = []
        outcomes.reserveCapacity(evaluated.count)
        var relevant = IndexMask(count: itemCount)
        var scores = Matrix(rows: min(batchSize, evaluated.count), columns: itemCount)
        var start = evaluated.startIndex
        while start < evaluated.endIndex {
            let end = min(start + batchSize, evaluated.endIndex)
            let batch = evaluated[start..<end]
            if scores.rows != batch.count { scores = Matrix(rows: batch.count, columns: itemCount) }
            scorer.score(batch, into: &scores)
            let lists = TopK.select(rowsOf: scores, k: listLength, excluding: batch.map(\.known))
            for (user, list) in zip(batch, lists) {
                relevant.insert(contentsOf: user.heldOut)
                var hitRanks: [Int] = []
                for (position, item) in list.enumerated() where relevant.contains(item) {
                    hitRanks.append(position + 1)
                }
                relevant.remove(contentsOf: user.heldOut)
                outcomes.append(
                    UserOutcome(
                        userIndex: user.userIndex, heldOutCount: user.heldOut.count, hitRanks: hitRanks,
                        listLength: listLength))
            }
            start = end
        }
        return outcomes
    }

    /// Scores `users` with `scorer` and averages every metric at every cutoff.
    ///
    /// - Parameter fold: which held-out slice `users` carries (recorded in the report).
    public func evaluate(_ scorer: some Scorer, on users: [FoldUser], itemCount: Int, fold: Fold) -> EvaluationReport {
        EvaluationReport(
            outcomes: outcomes(of: scorer, on: users, itemCount: itemCount), cutoffs: cutoffs, fold: fold.rawValue)
    }
}
