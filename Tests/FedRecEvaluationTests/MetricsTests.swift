import FedRecData
import FedRecEvaluation
import FedRecTensor
import Testing

/// Relative-tolerance comparison (swift-numerics' `isApproximatelyEqual` shape).
func approximatelyEqual(_ a: Double, _ b: Double, relative: Double = 1e-12, absolute: Double = 1e-15) -> Bool {
    abs(a - b) <= max(absolute, relative * max(abs(a), abs(b)))
}

/// A scorer that hands out fixed score rows, looked up by `FoldUser.userIndex`.
struct FixedScorer: Scorer {
    let rows: [Int: [Float]]

    func score(_ users: ArraySlice<FoldUser>, into scores: inout Matrix) {
        for (row, user) in users.enumerated() {
            let values = rows[user.userIndex]!
            for column in 0..<scores.columns { scores[row, column] = values[column] }
        }
    }
}

@Suite struct UserOutcomeTests {
    /// Three held-out items, hits at ranks 1 and 3 of a 5-long list.
    @Test func handComputedValues() {
        let outcome = UserOutcome(userIndex: 0, heldOutCount: 3, hitRanks: [1, 3], listLength: 5)
        // K = 1: one hit.
        #expect(outcome.hits(at: 1) == 1)
        #expect(approximatelyEqual(outcome.value(of: .recall, at: 1), 1.0 / 3))
        #expect(outcome.value(of: .precision, at: 1) == 1)
        #expect(approximatelyEqual(outcome.value(of: .f1, at: 1), 0.5))  // 2 * 1 * 1/3 / (4/3)
        #expect(outcome.value(of: .hitRate, at: 1) == 1)
        #expect(outcome.value(of: .ndcg, at: 1) == 1)  // IDCG over min(1, 3) = 1 hit
        // K = 5: two hits; DCG = 1 + 1/log2(4) = 1.5, IDCG = 1 + 1/log2(3) + 1/log2(4).
        #expect(outcome.hits(at: 5) == 2)
        #expect(approximatelyEqual(outcome.value(of: .recall, at: 5), 2.0 / 3))
        #expect(approximatelyEqual(outcome.value(of: .precision, at: 5), 0.4))
        #expect(approximatelyEqual(outcome.value(of: .f1, at: 5), 0.5))  // 2 * 0.4 * 2/3 / (0.4 + 2/3)
        #expect(approximatelyEqual(outcome.value(of: .ndcg, at: 5), 0.7039180890341347))
    }

    /// |heldOut| = 1 < K = 10, the single item at rank 2.
    @Test func fewerHeldOutThanK() {
        let outcome = UserOutcome(userIndex: 0, heldOutCount: 1, hitRanks: [2], listLength: 10)
        #expect(outcome.value(of: .recall, at: 10) == 1)
        #expect(approximatelyEqual(outcome.value(of: .precision, at: 10), 0.1))
        #expect(approximatelyEqual(outcome.value(of: .ndcg, at: 10), 0.6309297535714575))  // 1/log2(3) over 1
        #expect(approximatelyEqual(outcome.value(of: .f1, at: 10), 2 * 0.1 / 1.1))
    }

    /// |heldOut| = 4 > K = 2, both slots hit: NDCG is 1 (IDCG over min(2, 4) hits), recall is 1/2.
    @Test func moreHeldOutThanK() {
        let outcome = UserOutcome(userIndex: 0, heldOutCount: 4, hitRanks: [1, 2], listLength: 2)
        #expect(outcome.value(of: .recall, at: 2) == 0.5)
        #expect(approximatelyEqual(outcome.value(of: .ndcg, at: 2), 1))
        #expect(outcome.value(of: .precision, at: 2) == 1)
        #expect(approximatelyEqual(outcome.value(of: .f1, at: 2), 2.0 / 3))
    }

    @Test func noHitsIsZeroEverywhere() {
        let outcome = UserOutcome(userIndex: 0, heldOutCount: 2, hitRanks: [], listLength: 20)
        for metric in Metric.allCases {
            #expect(outcome.value(of: metric, at: 20) == 0)
        }
    }
}

@Suite struct EvaluatorTests {
    /// Three users over six items:
    /// - user 0: scores [5, 4, 4, 3, 9, 4], knows item 4 (the best, excluded), holds out {2, 3}. Ranking
    ///   0, 1, 2, 5, 3 (ties 1, 2, 5 by index): the only hit in the top 3 is item 2, at rank 3.
    /// - user 1: no held-out items, so not evaluated.
    /// - user 2: all scores equal, knows {0, 1}, holds out {2}: ranking 2, 3, 4, 5, hit at rank 1.
    static let users = [
        FoldUser(userIndex: 0, known: [4], heldOut: [2, 3]),
        FoldUser(userIndex: 1, known: [0], heldOut: []),
        FoldUser(userIndex: 2, known: [0, 1], heldOut: [2]),
    ]
    static let scorer = FixedScorer(rows: [
        0: [5, 4, 4, 3, 9, 4],
        1: [0, 0, 0, 0, 0, 0],
        2: [1, 1, 1, 1, 1, 1],
    ])

    @Test(arguments: [1, 2, 256])
    func handComputedReport(batchSize: Int) throws {
        let evaluator = Evaluator(cutoffs: [3, 1], batchSize: batchSize)
        #expect(evaluator.cutoffs == [1, 3])
        let outcomes = evaluator.outcomes(of: Self.scorer, on: Self.users, itemCount: 6)
        #expect(
            outcomes == [
                UserOutcome(userIndex: 0, heldOutCount: 2, hitRanks: [3], listLength: 3),
                UserOutcome(userIndex: 2, heldOutCount: 1, hitRanks: [1], listLength: 3),
            ])
        let report = evaluator.evaluate(Self.scorer, on: Self.users, itemCount: 6, fold: .test)
        #expect(report.protocol == "fedrec-eval-v1")
        #expect(report.fold == "test")
        #expect(report.usersEvaluated == 2)
        // K = 1: user 0 misses, user 2 hits with every metric at 1.
        for metric in Metric.allCases {
            #expect(report.value(metric, at: 1) == 0.5)
        }
        // K = 3: user 0 recall 1/2, NDCG 0.5 / (1 + 1/log2 3), P 1/3, F1 0.4; user 2 recall 1, NDCG 1, P 1/3, F1 0.5.
        #expect(try #require(report.value(.recall, at: 3)) == 0.75)
        #expect(approximatelyEqual(try #require(report.value(.ndcg, at: 3)), 0.6532867981913646))
        #expect(try #require(report.value(.hitRate, at: 3)) == 1)
        #expect(approximatelyEqual(try #require(report.value(.precision, at: 3)), 1.0 / 3))
        #expect(approximatelyEqual(try #require(report.value(.f1, at: 3)), 0.45))
        #expect(report.value(.recall, at: 20) == nil)
    }

    /// A user whose unknown items are fewer than K gets a shorter list; precision still divides by K.
    @Test func shortListWhenAlmostEverythingIsKnown() {
        let users = [FoldUser(userIndex: 0, known: [0, 1, 2], heldOut: [3])]
        let scorer = FixedScorer(rows: [0: [4, 3, 2, 1]])
        let report = Evaluator(cutoffs: [10]).evaluate(scorer, on: users, itemCount: 4, fold: .validation)
        #expect(report.value(.recall, at: 10) == 1)
        #expect(report.value(.ndcg, at: 10) == 1)
        #expect(report.value(.precision, at: 10) == 0.1)
        #expect(report.fold == "validation")
    }

    @Test func emptyFoldReportsZeros() {
        let report = Evaluator().evaluate(Self.scorer, on: [], itemCount: 6, fold: .test)
        #expect(report.usersEvaluated == 0)
        #expect(report.value(.recall, at: 20) == 0)
    }

    @Test func jsonRoundTripAndTable() throws {
        let report = Evaluator(cutoffs: [1, 3]).evaluate(Self.scorer, on: Self.users, itemCount: 6, fold: .test)
        let json = try report.json()
        #expect(json.contains("\"protocol\" : \"fedrec-eval-v1\""))
        #expect(json.contains("\"recall\""))
        #expect(try EvaluationReport(json: json) == report)
        let table = report.table
        #expect(table.contains("fold=test"))
        #expect(table.contains("@1") && table.contains("@3"))
        #expect(table.contains("\nR     0.5000  0.7500\n"))
        #expect(table.split(separator: "\n").count == 2 + Metric.allCases.count)
    }

    /// Subset reports: per-user outcomes aggregate again into the same report.
    @Test func reportFromOutcomesMatches() {
        let evaluator = Evaluator(cutoffs: [1, 3])
        let outcomes = evaluator.outcomes(of: Self.scorer, on: Self.users, itemCount: 6)
        let direct = evaluator.evaluate(Self.scorer, on: Self.users, itemCount: 6, fold: .test)
        #expect(EvaluationReport(outcomes: outcomes, cutoffs: [1, 3], fold: "test") == direct)
    }
}

@Suite struct ScorerTests {
    @Test func embeddingScorerUsesUserIndexRows() {
        // Users 0..2 (2-d), items 0..3.
        let userEmbeddings = Matrix(rows: 3, columns: 2, storage: [1, 0, 0, 1, 1, -1])
        let itemEmbeddings = Matrix(rows: 4, columns: 2, storage: [1, 2, 3, 4, -1, 0, 0.5, 0.5])
        let scorer = EmbeddingScorer(userEmbeddings: userEmbeddings, itemEmbeddings: itemEmbeddings)
        let users = [FoldUser(userIndex: 2, known: [], heldOut: [0]), FoldUser(userIndex: 0, known: [], heldOut: [0])]
        var scores = Matrix(rows: 2, columns: 4, repeating: .nan)
        scorer.score(users[...], into: &scores)
        #expect(scores.row(0) == [-1, -1, -1, 0])  // user 2 = (1, -1)
        #expect(scores.row(1) == [1, 3, -1, 0.5])  // user 0 = (1, 0)
    }

    @Test func popularityCountsKnownItems() {
        let users = [
            FoldUser(userIndex: 0, known: [0, 2], heldOut: [3]),
            FoldUser(userIndex: 1, known: [2], heldOut: [0]),
        ]
        let scorer = PopularityScorer(users: users, itemCount: 4)
        #expect(scorer.counts == [1, 0, 2, 0])
        var scores = Matrix(rows: 2, columns: 4)
        scorer.score(users[...], into: &scores)
        #expect(scores.storage == [1, 0, 2, 0, 1, 0, 2, 0])
        // Ties (items 1 and 3 at 0) go to the lower index: user 0's list is 1, 3; user 1's is 0, 1, 3.
        let outcomes = Evaluator(cutoffs: [3]).outcomes(of: scorer, on: users, itemCount: 4)
        #expect(outcomes.map(\.hitRanks) == [[2], [1]])
    }
}
