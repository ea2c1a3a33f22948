import Foundation
import Testing

/// Runs the built `fedrec` executable as a separate process, the way users do.
enum CLI {
    struct Result {
        var status: Int32
        var output: String
        var error: String
        var combined: String { output + error }
    }

    /// The package root (this file is Tests/fedrecCLITests/CLIHarness.swift).
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The `fedrec` binary beside the test bundle (swift build puts both in the same folder).
    static let executable: URL = {
        let candidates = [
            Bundle.main.executableURL?.deletingLastPathComponent(),
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
        ].compactMap { $0 }.map { $0.appendingPathComponent("fedrec") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }()

    static func run(_ arguments: [String]) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes before waiting so a chatty child cannot block on a full pipe.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, output: String(decoding: outData, as: UTF8.self),
            error: String(decoding: errData, as: UTF8.self))
    }

    /// A fresh temporary folder.
    static func temporaryFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("fedrec-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A small generic data set with learnable structure: users in two taste groups, each group preferring
    /// its own half of the catalogue. Seeded, so every run writes the same file.
    static func writeSyntheticInteractions(to folder: URL, users: Int = 40, items: Int = 30) throws -> URL {
        var state: UInt64 = 42
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var lines = ["user\titem\tvalue\ttimestamp"]
        for user in 0..<users {
            let group = user % 2
            var seen = Set<Int>()
            for step in 0..<12 {
                let inGroup = next() % 10 < 8
                let half = inGroup ? group : 1 - group
                let item = half * (items / 2) + Int(next() % UInt64(items / 2))
                guard seen.insert(item).inserted else { continue }
                lines.append("u\(user)\ti\(item)\t1\t\(1_000 + step)")
            }
        }
        let file = folder.appendingPathComponent("interactions.tsv")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        return file
    }
}
