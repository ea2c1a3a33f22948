public import FedRecData
public import FedRecTensor

/// Produces scores for a batch of users over the whole catalogue.
///
/// Contract: `score(_:into:)` receives a matrix with `users.count` rows and one column per
/// catalogue item (`scores.columns` is the catalogue size) and must overwrite every element: row `r`
/// holds the scores of `users[users.startIndex + r]`, column `i` the score of item index `i`.
/// Higher is better; ties are broken by item index through `TopK`'s ranking order, and NaN ranks
/// last. A scorer does not exclude known items; the `Evaluator` does.
public protocol Scorer {
    func score(_ users: ArraySlice<FoldUser>, into scores: inout Matrix)
}

/// Dot-product scores of user and item embeddings (the two-tower model's retrieval score).
///
/// Invariants: `userEmbeddings.columns == itemEmbeddings.columns` (the embedding width `d`); row `u`
/// of `userEmbeddings` is the embedding of the user with `FoldUser.userIndex == u` (the data set's
/// user index, not the position in a fold array, so one matrix serves every fold); row `i` of
/// `itemEmbeddings` is the embedding of catalogue item `i`. Scores come from one `sgemm` per batch.
public struct EmbeddingScorer: Scorer, Sendable {
    public let userEmbeddings: Matrix
    public let itemEmbeddings: Matrix

    public init(userEmbeddings: Matrix, itemEmbeddings: Matrix) {
        precondition(
            userEmbeddings.columns == itemEmbeddings.columns,
            "user embeddings are \(userEmbeddings.columns)-wide, item embeddings \(itemEmbeddings.columns)-wide")
        self.userEmbeddings = userEmbeddings
        self.itemEmbeddings = itemEmbeddings
    }

    public func score(_ users: ArraySlice<FoldUser>, into scores: inout Matrix) {
        precondition(scores.rows == users.count, "score matrix has \(scores.rows) rows for \(users.count) users")
        precondition(
            scores.columns == itemEmbeddings.rows,
            "score matrix has \(scores.columns) columns for \(itemEmbeddings.rows) items")
        let width = userEmbeddings.columns
        var batch = Matrix(rows: users.count, columns: width)
        for (row, user) in users.enumerated() {
            precondition(
                user.userIndex >= 0 && user.userIndex < userEmbeddings.rows,
                "user index \(user.userIndex) has no embedding row (\(userEmbeddings.rows) rows)")
            let source = user.userIndex * width
            batch.storage.replaceSubrange(
                (row * width)..<((row + 1) * width), with: userEmbeddings.storage[source..<(source + width)])
        }
        BLAS.gemm(batch, .none, itemEmbeddings, .transpose, into: &scores)
    }
}

/// Most-popular baseline: every user gets the same scores, the number of users whose known
/// (training) items contain the item. Invariant: `counts.count` is the catalogue size.
public struct PopularityScorer: Scorer, Sendable {
    /// Per catalogue item, how many users know it.
    public let counts: [Float]

    /// Counts item occurrences over every user's `known` items (each index in `0..<itemCount`).
    public init(users: [FoldUser], itemCount: Int) {
        var counts = [Float](repeating: 0, count: itemCount)
        for user in users {
            for item in user.known {
                precondition(item >= 0 && Int(item) < itemCount, "item index \(item) outside catalogue of \(itemCount)")
                counts[Int(item)] += 1
            }
        }
        self.counts = counts
    }

    public func score(_ users: ArraySlice<FoldUser>, into scores: inout Matrix) {
        precondition(scores.rows == users.count, "score matrix has \(scores.rows) rows for \(users.count) users")
        precondition(
            scores.columns == counts.count, "score matrix has \(scores.columns) columns for \(counts.count) items")
        let columns = counts.count
        for row in 0..<scores.rows {
            scores.storage.replaceSubrange((row * columns)..<((row + 1) * columns), with: counts)
        }
    }
}
