import FedRecSecurity
import Foundation

/// Paths and temporary files shared by the data tests.
enum Fixtures {
    /// The package root, derived from this file's path (`<root>/Tests/FedRecDataTests/Fixtures.swift`).
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `../shared` beside the package root (a read-only copy in CI).
    static let shared: URL = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")

    /// MovieLens 100k is never in the repository (license); tests read it from `../shared` when present.
    static let ml100k = shared.appendingPathComponent("data/ml-100k").path
    static var hasML100k: Bool { FileManager.default.fileExists(atPath: ml100k + "/u.data") }

    /// The shipped demo copy of ml-latest-small.
    static let mlLatestSmall = packageRoot.appendingPathComponent("demo/data/ml-latest-small").path

    static func referenceSplit(_ dataset: String) -> URL {
        shared.appendingPathComponent("reference/splits/\(dataset)")
    }
    static var hasReferenceSplits: Bool {
        FileManager.default.fileExists(
            atPath: referenceSplit("ml-latest-small").appendingPathComponent("sha256.txt").path)
    }

    /// A fresh temporary folder, removed by the caller with `remove`.
    static func temporaryFolder() throws -> String {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("fedrec-data-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }

    /// Writes `files` (name → text) into a fresh temporary folder and returns its path.
    static func folder(_ files: [String: String]) throws -> String {
        let path = try temporaryFolder()
        for (name, text) in files {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path + "/" + name))
        }
        return path
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func sha256(_ bytes: [UInt8]) throws -> String {
        SHA256.hex(try SHA256.hash(bytes))
    }
}
