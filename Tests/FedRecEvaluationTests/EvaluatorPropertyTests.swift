import FedRecData
import FedRecEvaluation
import FedRecTensor
import Foundation
import PropertyBased
import Testing

/// Cross-checks `Evaluator` + `EmbeddingScorer` against a direct transcription of the protocol:
/// per user, Float dot products, a full sort by (score desc, item index asc) of the unknown items,
/// metrics from the definitions.
@Suite struct EvaluatorPropertyTests {
    /// Random small catalogues with coarse embeddings (many tied scores), random folds, odd batch sizes.
    @Test func matchesDirectProtocol() async {
        await propertyCheck(count: 60, input: Gen.int(in: 0...100_000), Gen.int(in: 1...5)) { seed, batchSize in
            var rng = SplitMix64(seed: UInt64(seed))
            let (userCount, itemCount, width) = (9, 30, 2)
            // Coordinates in {-1, 0, 1}: dot products are small integers, hence exact and often tied.
            func coarse() -> Float { Float(Int(rng.next() % 3) - 1) }
            let userEmbeddings = Matrix(
                rows: userCount, columns: width, storage: (0..<(userCount * width)).map { _ in coarse() })
            let itemEmbeddings = Matrix(
                rows: itemCount, columns: width, storage: (0..<(itemCount * width)).map { _ in coarse() })
            var users: [FoldUser] = []
            for user in (0..<userCount).shuffled(using: &rng) {
                var known: [Int32] = []
                var heldOut: [Int32] = []
                for item in Int32(0)..<Int32(itemCount) {
                    switch rng.next() % 6 {
                    case 0: known.append(item)
                    case 1: heldOut.append(item)
                    default: break
                    }
                }
                users.append(FoldUser(userIndex: user, known: known, heldOut: heldOut))
            }
            let cutoffs = [1, 5, 10]
            let report = Evaluator(cutoffs: cutoffs, batchSize: batchSize).evaluate(
                EmbeddingScorer(userEmbeddings: userEmbeddings, itemEmbeddings: itemEmbeddings), on: users,
                itemCount: itemCount, fold: .test)

            var sums: [Metric: [Int: Double]] = [:]
            var evaluated = 0
            for user in users where !user.heldOut.isEmpty {
                evaluated += 1
                let scores = (0..<itemCount).map { item in
                    (0..<width).reduce(Float(0)) { $0 + userEmbeddings[user.userIndex, $1] * itemEmbeddings[item, $1] }
                }
                let ranking = (0..<itemCount).filter { !user.known.contains(Int32($0)) }
                    .sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
                for k in cutoffs {
                    let top = ranking.prefix(k)
                    let hitRanks = top.enumerated().filter { user.heldOut.contains(Int32($0.element)) }.map {
                        $0.offset + 1
                    }
                    let hits = Double(hitRanks.count)
                    let recall = hits / Double(user.heldOut.count)
                    let precision = hits / Double(k)
                    let dcg = hitRanks.reduce(0.0) { $0 + 1 / log2(Double($1 + 1)) }
                    let idcg = (1...min(k, user.heldOut.count)).reduce(0.0) { $0 + 1 / log2(Double($1 + 1)) }
                    let values: [Metric: Double] = [
                        .recall: recall, .precision: precision, .hitRate: hits > 0 ? 1 : 0, .ndcg: dcg / idcg,
                        .f1: precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall),
                    ]
                    for (metric, value) in values { sums[metric, default: [:]][k, default: 0] += value }
                }
            }
            #expect(report.usersEvaluated == evaluated)
            for metric in Metric.allCases {
                for k in cutoffs {
                    let expected = evaluated == 0 ? 0 : (sums[metric]?[k] ?? 0) / Double(evaluated)
                    #expect(
                        approximatelyEqual(
                            report.value(metric, at: k) ?? .nan, expected, relative: 1e-12, absolute: 1e-12))
                }
            }
        }
    }
}
