import FedRecData
import FedRecEvaluation
import Foundation
import Testing

/// `../shared` next to the package root (this file is `<root>/Tests/FedRecEvaluationTests/<file>`).
private let sharedFolder = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("shared")

private let ml100k = sharedFolder.appendingPathComponent("data/ml-100k/u.data").path
private let mlLatestSmall = sharedFolder.appendingPathComponent("data/ml-latest-small/ratings.csv").path

/// A timestamp field that is not a non-negative decimal integer.
private struct BadTimestamp: Error {
    let line: Int
}

/// A self-contained `fedrec-eval-v1` test-fold builder for MovieLens rating files, independent of
/// FedRecData's importer so these figures check the evaluator alone: every row is an interaction;
/// ids trimmed of whitespace and CR; the earliest duplicate per (user, item) kept; users with fewer
/// than 5 interactions dropped; per user, order by (timestamp as integer, item id as bytes), the last
/// `(n + 4) / 5` are test. Item index = order of first appearance in the file.
private func loadTestFold(path: String, separator: UInt8, hasHeader: Bool) throws -> (users: [FoldUser], itemCount: Int)
{
    let bytes = try #require(FileManager.default.contents(atPath: path))
    struct Row {
        let item: Int32
        let timestamp: Int
        let line: Int
    }
    var itemIndex: [String: Int32] = [:]
    var itemIDs: [[UInt8]] = []
    var userIndex: [String: Int] = [:]
    var rowsByUser: [[Row]] = []

    /// `range` without surrounding spaces, tabs and CRs.
    func trimmed(_ range: Range<Int>, in buffer: UnsafeBufferPointer<UInt8>) -> Range<Int> {
        var (lower, upper) = (range.lowerBound, range.upperBound)
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D }
        while lower < upper && isSpace(buffer[lower]) { lower += 1 }
        while upper > lower && isSpace(buffer[upper - 1]) { upper -= 1 }
        return lower..<upper
    }

    try bytes.withUnsafeBytes { raw in
        let buffer = raw.bindMemory(to: UInt8.self)
        var fields: [Range<Int>] = []
        var lineStart = 0
        var lineNumber = 0
        while lineStart < buffer.count {
            var lineEnd = lineStart
            while lineEnd < buffer.count && buffer[lineEnd] != 0x0A { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            lineNumber += 1
            if hasHeader && lineNumber == 1 { continue }
            fields.removeAll(keepingCapacity: true)
            var fieldStart = lineStart
            for position in lineStart...lineEnd where position == lineEnd || buffer[position] == separator {
                fields.append(trimmed(fieldStart..<position, in: buffer))
                fieldStart = position + 1
            }
            if fields.count < 4 || fields[0].isEmpty { continue }
            let userID = String(decoding: UnsafeBufferPointer(rebasing: buffer[fields[0]]), as: UTF8.self)
            let itemID = String(decoding: UnsafeBufferPointer(rebasing: buffer[fields[1]]), as: UTF8.self)
            var timestamp = 0
            for position in fields[3] {
                let digit = Int(buffer[position]) - 0x30
                guard digit >= 0 && digit <= 9 else { throw BadTimestamp(line: lineNumber) }
                timestamp = timestamp * 10 + digit
            }
            let item: Int32
            if let known = itemIndex[itemID] {
                item = known
            } else {
                item = Int32(itemIDs.count)
                itemIndex[itemID] = item
                itemIDs.append(Array(itemID.utf8))
            }
            let user: Int
            if let known = userIndex[userID] {
                user = known
            } else {
                user = rowsByUser.count
                userIndex[userID] = user
                rowsByUser.append([])
            }
            rowsByUser[user].append(Row(item: item, timestamp: timestamp, line: lineNumber))
        }
    }

    var users: [FoldUser] = []
    for (user, rows) in rowsByUser.enumerated() {
        // Earliest per item: smallest timestamp, then first in file order.
        var earliest: [Int32: Row] = [:]
        for row in rows {
            if let kept = earliest[row.item], (kept.timestamp, kept.line) <= (row.timestamp, row.line) { continue }
            earliest[row.item] = row
        }
        guard earliest.count >= 5 else { continue }
        let ordered = earliest.values.sorted { a, b in
            a.timestamp != b.timestamp
                ? a.timestamp < b.timestamp : itemIDs[Int(a.item)].lexicographicallyPrecedes(itemIDs[Int(b.item)])
        }
        let testCount = (ordered.count + 4) / 5
        users.append(
            FoldUser(
                userIndex: user, known: ordered.dropLast(testCount).map(\.item),
                heldOut: ordered.suffix(testCount).map(\.item)))
    }
    return (users, itemIDs.count)
}

/// Popularity figures of `../shared/reference/RESULTS.md` reproduced through `Evaluator`.
/// The data sets are read from `../shared` and never copied into the repository (ml-100k's license
/// forbids redistribution); each test is skipped when its file is absent.
@Suite struct PopularityReferenceTests {
    static let tolerance = 5e-5

    @Test(.enabled(if: FileManager.default.fileExists(atPath: ml100k), "needs ../shared/data/ml-100k"))
    func ml100kPopularityRow() throws {
        let (users, itemCount) = try loadTestFold(path: ml100k, separator: 0x09, hasHeader: false)
        #expect(users.count == 943 && itemCount == 1682)
        #expect(users.reduce(0) { $0 + $1.known.count } == 79619)
        let report = Evaluator().evaluate(
            PopularityScorer(users: users, itemCount: itemCount), on: users,
            itemCount: itemCount, fold: .test)
        #expect(report.usersEvaluated == 943)
        let expected: [(Metric, Int, Double)] = [
            (.recall, 10, 0.0622), (.recall, 20, 0.0997), (.recall, 50, 0.2040),
            (.ndcg, 10, 0.1191), (.ndcg, 20, 0.1206), (.ndcg, 50, 0.1544), (.hitRate, 20, 0.6744),
        ]
        for (metric, k, value) in expected {
            let actual = try #require(report.value(metric, at: k))
            #expect(abs(actual - value) <= Self.tolerance, "\(metric)@\(k) = \(actual), reference \(value)")
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: mlLatestSmall), "needs ../shared/data/ml-latest-small"))
    func mlLatestSmallPopularityRow() throws {
        let (users, itemCount) = try loadTestFold(path: mlLatestSmall, separator: 0x2C, hasHeader: true)
        #expect(users.count == 611 && itemCount == 9724)
        #expect(users.reduce(0) { $0 + $1.known.count } == 80467)
        let report = Evaluator().evaluate(
            PopularityScorer(users: users, itemCount: itemCount), on: users,
            itemCount: itemCount, fold: .test)
        #expect(report.usersEvaluated == 611)
        let expected: [(Metric, Int, Double)] = [
            (.recall, 10, 0.0384), (.recall, 20, 0.0678), (.recall, 50, 0.1292),
            (.ndcg, 10, 0.0887), (.ndcg, 20, 0.0922), (.ndcg, 50, 0.1084), (.hitRate, 20, 0.5155),
        ]
        for (metric, k, value) in expected {
            let actual = try #require(report.value(metric, at: k))
            #expect(abs(actual - value) <= Self.tolerance, "\(metric)@\(k) = \(actual), reference \(value)")
        }
    }
}
