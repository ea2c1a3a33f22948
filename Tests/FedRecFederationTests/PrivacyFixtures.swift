import Foundation

/// The dp-accounting 0.6 reference files in `../shared/reference/` (beside the package root) and helpers for
/// the privacy tests. The path is derived from this file's resolved path, so it also works when the file is
/// reached through a symlink.
enum PrivacyFixtures {
    /// `<root>/Tests/FedRecFederationTests/PrivacyFixtures.swift` → `<root>`.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let reference: URL = packageRoot.deletingLastPathComponent()
        .appendingPathComponent("shared/reference")

    static var hasReference: Bool {
        FileManager.default.fileExists(atPath: reference.appendingPathComponent("dp_epsilon.csv").path)
    }

    /// One row of `dp_epsilon.csv` joined with `dp_epsilon_detail.csv`.
    struct EpsilonRow: Sendable, CustomStringConvertible {
        var q: Double
        var z: Double
        var steps: Int
        var delta: Double
        var epsilon: Double
        var optimalOrder: Double
        var excludedOrders: [Double]

        var description: String { "q=\(q) z=\(z) T=\(steps) δ=\(delta)" }
    }

    /// Per-order RDP of one step, `nil` where dp-accounting excluded the order.
    struct PerStep: Decodable, Sendable {
        var q: Double
        var z: Double
        var rdp: [Double?]
    }

    struct PerStepFile: Decodable, Sendable {
        var orders: [Double]
        var perStep: [PerStep]

        enum CodingKeys: String, CodingKey {
            case orders
            case perStep = "per_step"
        }
    }

    /// Columns of a CSV file with a header, by name.
    static func csv(_ name: String) throws -> [[String: String]] {
        let text = try String(contentsOf: reference.appendingPathComponent(name), encoding: .utf8)
        let lines = text.split(whereSeparator: \.isNewline).map(String.init)
        guard let header = lines.first?.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        else { return [] }
        return lines.dropFirst().map { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            return Dictionary(uniqueKeysWithValues: zip(header, fields))
        }
    }

    static func epsilonRows() throws -> [EpsilonRow] {
        let main = try csv("dp_epsilon.csv")
        let detail = try csv("dp_epsilon_detail.csv")
        precondition(main.count == detail.count, "dp_epsilon.csv and dp_epsilon_detail.csv differ in length")
        return zip(main, detail).map { row, extra in
            precondition(row["q"] == extra["q"] && row["steps"] == extra["steps"] && row["delta"] == extra["delta"])
            return EpsilonRow(
                q: Double(row["q"]!)!, z: Double(row["z"]!)!, steps: Int(row["steps"]!)!,
                delta: Double(row["delta"]!)!, epsilon: Double(row["eps_rdp"]!)!,
                optimalOrder: Double(extra["rdp_optimal_order"]!)!,
                excludedOrders: (extra["rdp_excluded_orders"] ?? "").split(separator: " ").map { Double($0)! })
        }
    }

    static func perStepFile() throws -> PerStepFile {
        try JSONDecoder().decode(
            PerStepFile.self, from: Data(contentsOf: reference.appendingPathComponent("dp_rdp_per_step.json")))
    }

    /// `|a − b| ≤ relative · max(|a|, |b|)` (infinities equal only to themselves).
    static func isClose(_ a: Double, _ b: Double, relative: Double) -> Bool {
        if a.isInfinite || b.isInfinite { return a == b }
        return abs(a - b) <= relative * max(abs(a), abs(b))
    }
}
