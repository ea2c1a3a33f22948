import Foundation
import Testing

/// End-to-end tests of the `fedrec` command as a separate process: help, input validation, and the
/// import -> split -> train -> evaluate -> recall pipeline on a small synthetic data set.
@Suite(.serialized) struct CLITests {
    /// `fedrec coordinator` with placeholder paths (validation refuses before any is read) and `options`.
    static func coordinator(_ options: String...) -> [String] {
        ["coordinator", "--dataset", "d", "--keys", "k", "--allow-list", "a", "--state", "s"] + options
    }

    @Test(arguments: [
        ["--help"], ["data", "--help"], ["data", "import", "--help"], ["data", "split", "--help"], ["train", "--help"],
        ["evaluate", "--help"], ["recall", "--help"], ["bench", "--help"], ["bench", "train-step", "--help"],
        ["bench", "masks", "--help"], ["bench", "import", "--help"],
    ])
    func everyCommandHasHelp(arguments: [String]) throws {
        let result = try CLI.run(arguments)
        #expect(result.status == 0, "\(arguments): \(result.combined)")
        #expect(result.combined.contains("USAGE:"))
    }

    /// A tiny `bench masks` prints both speeds (figures only: tests never judge wall time).
    @Test func maskBenchmarkPrintsBothSpeeds() throws {
        let result = try CLI.run(["bench", "masks", "--words", "4096", "--terms", "2", "--runs", "1"])
        #expect(result.status == 0, "\(result.combined)")
        #expect(result.output.contains("raw crypto_stream_chacha20") && result.output.contains("masking (accumulate)"))
        #expect(result.output.components(separatedBy: "GB/s").count == 3, "\(result.output)")
    }

    @Test(arguments: [
        (["train", "--dataset", "x", "--out", "y", "--batch-size", "0"], "--batch-size must be positive"),
        (["train", "--dataset", "x", "--out", "y", "--tau=-1"], "--tau must be a positive number"),
        (["train", "--dataset", "x", "--out", "y", "--optimizer", "rmsprop"], "--optimizer must be 'adam' or 'sgd'"),
        (["train", "--dataset", "x", "--out", "y", "--threads", "0"], "--threads must be at least 1"),
        (["evaluate", "--model", "m", "--dataset", "d", "--k", "0"], "--k must be positive whole numbers"),
        (["evaluate", "--model", "m", "--dataset", "d", "--k", "10,,20"], "--k must be positive whole numbers"),
        (["evaluate", "--model", "m", "--dataset", "d", "--fold", "train"], "--fold must be 'test' or 'validation'"),
        (["recall", "--model", "m", "--history-ids", "1", "--k", "0"], "--k must be positive"),
        // A negative number is a numeric option's value (refused by its own check), not a missing value.
        (["recall", "--model", "m", "--history-ids", "1", "--k", "-1"], "--k must be positive, got -1"),
        (coordinator("--rounds", "-1"), "--rounds must be at least 1, got -1"),
        (["simulate", "--dataset", "d", "--server-lr", "-0.5"], "--server-lr must be a positive number, got -0.5"),
        (["recall", "--model", "m", "--history-ids", "1", "--k", "--json"], "The value '--json' is invalid for '--k"),
        (["recall", "--model", "m", "--user", "1"], "--user needs --dataset"),
        (["recall", "--model", "m", "--history-ids", "1", "--ef-search", "2147483647"], "--ef-search must lie in 1...16777216"),
        (["recall", "--model", "m", "--history-ids", "1", "--hnsw-m", "4294967298"], "--hnsw-m must lie in 2...2048"),
        (["recall", "--model", "m"], "give exactly one of --user"),
        (["simulate", "--dataset", "d", "--adaptive-clipping"], "--adaptive-clipping needs differential privacy"),
        (
            ["simulate", "--dataset", "d", "--noise-multiplier", "1", "--clip-quantile", "1.5"],
            "--clip-quantile must lie"
        ),
        (["simulate", "--dataset", "d", "--noise-multiplier", "1", "--clip-lr", "0"], "--clip-lr must be positive"),
        (["simulate", "--dataset", "d", "--target-epsilon", "8"], "--target-epsilon needs differential privacy"),
        (coordinator("--local-batch=-1"), "--local-batch at least 0"),
        (coordinator("--batch-size=-1"), "--local-batch at least 0"),
        (
            ["simulate", "--dataset", "d", "--noise-multiplier", "1", "--target-epsilon", "0"],
            "--target-epsilon must be a positive number"
        ),
        // Numbers no run can use are refused naming the option, not trapped on in a conversion later.
        (coordinator("--deadline", "1e300"), "--deadline must lie in 0.001...10000000 seconds"),
        (coordinator("--deadline", "1e-300"), "--deadline must lie in"),
        (coordinator("--enrol-grace", "inf"), "--enrol-grace must lie in 0...10000000 seconds"),
        (coordinator("--proximal-mu", "inf"), "--proximal-mu must be a number in"),
        (coordinator("--item-lr", "inf"), "--item-lr must be a positive number"),
        (coordinator("--log-level", "bogus"), "--log-level must be one of"),
        (coordinator("--dimension", "100000000"), "--dimension must lie in 1...4096"),
        (["client", "--coordinator", "127.0.0.1:5000", "--dataset", "d", "--keys", "k", "--clients", "1", "--connect-timeout", "1e19"], "--connect-timeout must lie in"),
        (["simulate", "--dataset", "d", "--noise-multiplier", "inf"], "--noise-multiplier must be a number in"),
        (["simulate", "--dataset", "d", "--noise-multiplier", "1", "--clip-norm", "1e300"], "--clip-norm must be a positive number"),
        (["simulate", "--dataset", "d", "--proximal-mu", "inf"], "--proximal-mu must be a number in"),
        (["simulate", "--dataset", "d", "--dimension", "0"], "--dimension must lie in 1...4096"),
        (["train", "--dataset", "x", "--out", "y", "--dimension", "100000000"], "--dimension must lie in 1...4096"),
        (["train", "--dataset", "x", "--out", "/nonexistent/m.safetensors"], "the folder '/nonexistent' does not exist"),
        (["train", "--dataset", "x", "--out", "/tmp"], "'/tmp' is a folder"),
        (["items", "add", "--model", "m", "--id", "new\n7", "--title", "New (2024)"], "holds a control character"),
        (["items", "add", "--model", "m", "--id", "new", "--title", " "], "--title must not be empty"),
        (["items", "add", "--model", "m", "--id", "new", "--title", "T", "--year", "99999"], "--year must lie in 1800...2100"),
        (["items", "add", "--model", "m", "--id", "X,1", "--title", "T (2020)"], "holds a comma or surrounding spaces"),
        (["items", "add", "--model", "m", "--id", " X", "--title", "T (2020)"], "holds a comma or surrounding spaces"),
        // The demo checks what it forwards before importing or making keys; addresses are IPv4 literals.
        (["demo", "--port", "70000", "--out", "/nonexistent/demo"], "--port must lie in 0...65535"),
        (["demo", "--server-optimizer", "sgd", "--out", "/nonexistent/demo"], "--server-optimizer must be one of"),
        (["demo", "--local-batch=-1", "--out", "/nonexistent/demo"], "--local-batch at least 0"),
        (coordinator("--address", "localhost:5000"), "The value 'localhost:5000' is invalid for '--address"),
        (["client", "--coordinator", "localhost:5000", "--dataset", "d", "--keys", "k"], "is invalid for '--coordinator"),
    ])
    func invalidOptionsAreRejectedWithAMessage(arguments: [String], message: String) throws {
        let result = try CLI.run(arguments)
        #expect(result.status != 0)
        #expect(result.combined.contains(message), "\(arguments): \(result.combined)")
    }

    /// `keys show` prints a key file's public identity; a file named .key that is not one, or one readable by
    /// others, is refused in words (no error-code prefix).
    @Test func keysShowNamesWhatIsWrongWithAKeyFile() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let keys = folder.path
        try #require(try CLI.run(["keys", "generate", "--out", keys, "--name", "a"]).status == 0)
        let shown = try CLI.run(["keys", "show", keys + "/a.key"])
        #expect(shown.status == 0 && shown.output.hasPrefix("a ed25519:"), "\(shown.combined)")
        try "garbage\n".write(toFile: keys + "/b.key", atomically: true, encoding: .utf8)
        chmod(keys + "/b.key", 0o600)
        let garbage = try CLI.run(["keys", "show", keys + "/b.key"])
        #expect(garbage.status != 0)
        #expect(
            garbage.combined.contains("b.key is not a fedrec key file (its first line is not 'fedrec-identity-v1')"),
            "\(garbage.combined)")
        chmod(keys + "/a.key", 0o644)
        let open = try CLI.run(["keys", "show", keys + "/a.key"])
        #expect(open.status != 0)
        #expect(open.combined.contains("Error: \(keys)/a.key has mode 0644"), "\(open.combined)")
    }

    @Test func missingInputsAreNamed() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let missing = folder.appendingPathComponent("no-such-folder").path
        let importResult = try CLI.run(["data", "import", missing, "--out", folder.appendingPathComponent("d").path])
        #expect(importResult.status != 0)
        #expect(importResult.combined.contains("no-such-folder"))

        let model = folder.appendingPathComponent("missing.safetensors").path
        let evaluate = try CLI.run(["evaluate", "--model", model, "--dataset", missing])
        #expect(evaluate.status != 0)
        #expect(evaluate.combined.contains("model file '\(model)' does not exist"))
    }

    /// `train --out` and `simulate --out` replace an earlier model file and nothing else, checked before any work.
    @Test func modelOutputsReplaceOnlyModelFiles() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = try CLI.writeSyntheticInteractions(to: folder)
        let dataset = folder.appendingPathComponent("dataset").path
        try #require(
            try CLI.run(["data", "import", source.path, "--format", "generic", "--out", dataset]).status == 0)
        let manifest = dataset + "/manifest.json"
        let before = try Data(contentsOf: URL(fileURLWithPath: manifest))
        for command in ["train", "simulate"] {
            let result = try CLI.run([command, "--dataset", dataset, "--out", manifest, "--dimension", "8"])
            #expect(result.status != 0 && result.combined.contains("is not a fedrec model file"), "\(result.combined)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: manifest)) == before)
        // A model file is replaced by the next run.
        let model = folder.appendingPathComponent("m.safetensors").path
        for _ in 0..<2 {
            let result = try CLI.run(["train", "--dataset", dataset, "--out", model, "--dimension", "8", "--epochs", "1"])
            #expect(result.status == 0, "\(result.combined)")
        }
    }

    /// Users and items the content files leave out are imported without their features, and the import says
    /// how many.
    @Test func importNamesUsersAndItemsWithoutContent() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = folder.appendingPathComponent("ml")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        let ratings = (1...2).flatMap { user in (1...6).map { "\(user)\t\($0)\t4\t\(100 + $0)\n" } }.joined()
        let item = { (id: Int) in "\(id)|Movie \(id) (1990)|01-Jan-1990||x" + String(repeating: "|0", count: 19) + "\n" }
        for (name, text) in [
            ("u.data", ratings), ("u.user", "1|24|M|technician|85711\n"), ("u.item", (1...5).map(item).joined()),
        ] {
            try Data(text.utf8).write(to: source.appendingPathComponent(name))
        }
        let result = try CLI.run(["data", "import", source.path, "--out", folder.appendingPathComponent("d").path])
        #expect(result.status == 0, "\(result.combined)")
        #expect(result.combined.contains("warning: 1 of 2 users have no attributes"), "\(result.combined)")
        #expect(result.combined.contains("warning: 1 of 6 catalogue items have no title"), "\(result.combined)")
    }

    /// One demo per --out at a time: a second one, --fresh or not, is refused (exit 6) before it removes or
    /// writes anything (--fresh used to delete a running demo's folder under its coordinator).
    @Test func aSecondDemoOnTheSameFolderIsRefusedUntouched() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("demo").path
        try FileManager.default.createDirectory(atPath: out + "/state", withIntermediateDirectories: true)
        try Data("kept\n".utf8).write(to: URL(fileURLWithPath: out + "/state/state.json"))
        // This process stands for the running demo: it holds the folder's lock.
        let descriptor = open(out + "/.demo.lock", O_RDWR | O_CREAT, 0o600)
        try #require(descriptor >= 0 && flock(descriptor, LOCK_EX | LOCK_NB) == 0)
        defer { close(descriptor) }
        let result = try CLI.run(["demo", "--out", out, "--fresh", "--rounds", "1"])
        #expect(result.status == 6 && result.combined.contains("another demo is running on"), "\(result.combined)")
        #expect(FileManager.default.contents(atPath: out + "/state/state.json") == Data("kept\n".utf8))
    }

    /// `data import --force` replaces an earlier import and nothing else: not the source's folder, a folder
    /// holding the source or the current folder, nor a folder that is not a data set. Nothing is touched.
    @Test func importForceReplacesOnlyAnEarlierImport() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = try CLI.writeSyntheticInteractions(to: folder)
        let notes = folder.appendingPathComponent("notes.txt")
        try Data("keep me\n".utf8).write(to: notes)
        let other = folder.appendingPathComponent("other")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        try Data("mine\n".utf8).write(to: other.appendingPathComponent("mine.txt"))
        let cases: [(out: String, message: String)] = [
            (folder.path, "holds the input"),
            (other.path, "is not a data-set folder"),
            ("", "--out is empty"),
        ]
        for (out, message) in cases {
            let result = try CLI.run(["data", "import", source.path, "--format", "generic", "--out", out, "--force"])
            #expect(result.status != 0 && result.combined.contains(message), "\(out): \(result.combined)")
        }
        #expect(FileManager.default.fileExists(atPath: source.path) && FileManager.default.fileExists(atPath: notes.path))
        #expect(FileManager.default.fileExists(atPath: other.appendingPathComponent("mine.txt").path))
        // An earlier import is replaced.
        let dataset = folder.appendingPathComponent("dataset").path
        for _ in 0..<2 {
            let result = try CLI.run(["data", "import", source.path, "--format", "generic", "--out", dataset, "--force"])
            #expect(result.status == 0, "\(result.combined)")
        }
    }

    /// `simulate --target-epsilon` without `--rounds` runs as many rounds as the budget allows, the last one still
    /// within it; more `--rounds` than it allows, or a budget one round exceeds, is refused before any training.
    @Test func simulationRunsWithinThePrivacyBudget() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = try CLI.writeSyntheticInteractions(to: folder)
        let dataset = folder.appendingPathComponent("dataset").path
        try #require(
            try CLI.run(["data", "import", source.path, "--format", "generic", "--out", dataset]).status == 0)
        let common = [
            "simulate", "--dataset", dataset, "--fold", "validation", "--cohort", "4",
            "--dimension", "8", "--eval-every", "1000", "--noise-multiplier", "1.0", "--clip-norm", "0.5",
        ]
        let budget = 3.0
        let run = try CLI.run(common + ["--target-epsilon", "\(budget)"])
        try #require(run.status == 0, "\(run.combined)")
        let lines = run.output.split(separator: "\n")
        let budgetLine = lines.first(where: { $0.hasPrefix("privacy budget: epsilon 3.0") })
        let announced = try #require(budgetLine, "\(run.output)")
        let allowedCount = Int(announced.split(separator: " ").last ?? "")
        let allowed = try #require(allowedCount, "\(announced)")
        #expect(allowed > 1 && allowed < 1000, "\(announced)")
        #expect(announced.contains("allows \(allowed) round(s)"))
        #expect(run.output.contains("simulating \(allowed) rounds"))
        // The final round is evaluated: its number (0-based) and epsilon.
        let lastRound = lines.last(where: { $0.hasPrefix("round ") })
        let last = try #require(lastRound, "\(run.output)")
        let fields = last.split(separator: " ", omittingEmptySubsequences: true)
        #expect(Int(fields[1]) == allowed - 1, "\(last)")
        let spent = fields.firstIndex(of: "epsilon").flatMap { Double(fields[$0 + 1]) }
        let epsilon = try #require(spent, "\(last)")
        #expect(epsilon <= budget && epsilon > budget / 2, "\(last)")

        let exactly = try CLI.run(common + ["--target-epsilon", "\(budget)", "--rounds", "\(allowed)"])
        #expect(exactly.status == 0, "\(exactly.combined)")
        #expect(exactly.output.contains("simulating \(allowed) rounds"))

        let tooMany = try CLI.run(common + ["--target-epsilon", "\(budget)", "--rounds", "\(allowed + 1)"])
        #expect(tooMany.status != 0)
        #expect(
            tooMany.combined.contains("\(allowed + 1) rounds exceed the privacy budget: epsilon 3.0"),
            "\(tooMany.combined)")
        #expect(!tooMany.combined.contains("simulating"))

        let tooSmall = try CLI.run(common + ["--target-epsilon", "0.001"])
        #expect(tooSmall.status != 0)
        #expect(tooSmall.combined.contains("is spent by a single round"), "\(tooSmall.combined)")
    }

    /// A model released under differential privacy names its data set by the catalogue only; a data set with the
    /// same catalogue but another user-feature width (here more occupations) is refused, not read past its rows.
    /// Batch recall takes the users' features from the model's data set.
    @Test func userFeaturesComeOnlyFromAMatchingDataSet() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        var ratings = ""
        var users = ""
        for user in 1...12 {
            for step in 0..<8 { ratings += "\(user)\t\((user * 3 + step * 7) % 20 + 1)\t4\t\(880_000_000 + step)\n" }
            users += "\(user)|\(20 + user)|\(user % 2 == 0 ? "F" : "M")|\(user % 3 == 0 ? "writer" : "other")|00000\n"
        }
        func source(_ name: String, occupations: [String]) throws -> String {
            let path = folder.appendingPathComponent(name).path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            for (file, text) in [
                ("u.data", ratings), ("u.user", users), ("u.occupation", occupations.joined(separator: "\n") + "\n"),
            ] {
                try text.write(toFile: path + "/" + file, atomically: true, encoding: .utf8)
            }
            let dataset = folder.appendingPathComponent(name + "-dataset").path
            let imported = try CLI.run(["data", "import", path, "--out", dataset])
            try #require(imported.status == 0, "\(imported.combined)")
            return dataset
        }
        let narrow = try source("narrow", occupations: ["other", "writer"])
        let wide = try source("wide", occupations: ["artist", "other", "writer", "zoologist"])
        let model = folder.appendingPathComponent("private.safetensors").path
        let trained = try CLI.run([
            "simulate", "--dataset", narrow, "--rounds", "2", "--cohort", "4", "--dimension", "8",
            "--noise-multiplier", "1.0", "--clip-norm", "0.5", "--out", model,
        ])
        try #require(trained.status == 0, "\(trained.combined)")
        let evaluated = try CLI.run(["evaluate", "--model", model, "--dataset", narrow, "--fold", "validation"])
        #expect(evaluated.status == 0, "\(evaluated.combined)")
        let refused = try CLI.run(["evaluate", "--model", model, "--dataset", wide, "--fold", "validation"])
        #expect(refused.status != 0)
        #expect(
            refused.combined.contains("data set '\(wide)' has 13 user-feature column(s)")
                && refused.combined.contains("the model takes 11"), "\(refused.combined)")

        // Batch recall over a split file gives each user's features from --dataset, as --user does; without
        // it, it warns that the histories go without them.
        let split = folder.appendingPathComponent("split").path
        try #require(try CLI.run(["data", "split", "--dataset", narrow, "--out", split]).status == 0)
        let input = ["recall", "--model", model, "--input", split + "/train.tsv", "--k", "3"]
        let without = try CLI.run(input)
        #expect(without.status == 0 && without.error.contains("without --dataset these histories"), "\(without.error)")
        let with = try CLI.run(input + ["--dataset", narrow])
        #expect(with.status == 0 && !with.error.contains("without --dataset"), "\(with.combined)")
        #expect(with.output != without.output)
        let single = try CLI.run(["recall", "--model", model, "--user", "1", "--dataset", narrow, "--k", "3", "--json"])
        try #require(single.status == 0, "\(single.combined)")
        let first = try #require(with.output.split(separator: "\n").first { $0.contains("\"user\":\"1\"") })
        let ids = { (text: Substring) in text.matches(of: /"id" ?: ?"([^"]+)"/).map { String($0.1) } }
        #expect(ids(first) == ids(Substring(single.output)), "\(first) vs \(single.output)")
        #expect(try CLI.run(input + ["--dataset", wide]).status != 0)
    }

    @Test func pipelineImportSplitTrainEvaluateRecall() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = try CLI.writeSyntheticInteractions(to: folder)
        let dataset = folder.appendingPathComponent("dataset").path
        let model = folder.appendingPathComponent("model.safetensors").path

        let imported = try CLI.run(["data", "import", source.path, "--format", "generic", "--out", dataset])
        try #require(imported.status == 0, "\(imported.combined)")

        let splitFolder = folder.appendingPathComponent("split").path
        let split = try CLI.run(["data", "split", "--dataset", dataset, "--out", splitFolder])
        try #require(split.status == 0, "\(split.combined)")
        for file in ["train.tsv", "test.tsv", "items.tsv"] {
            #expect(FileManager.default.fileExists(atPath: splitFolder + "/" + file))
        }

        let trained = try CLI.run([
            "train", "--dataset", dataset, "--out", model, "--dimension", "8", "--batch-size", "32", "--max-epochs", "3",
            "--patience", "1", "--lr", "0.05",
        ])
        try #require(trained.status == 0, "\(trained.combined)")
        #expect(trained.output.contains("validation epoch  1"))
        #expect(trained.output.contains("refit epoch"))
        #expect(trained.output.contains("wrote \(model)"))

        let evaluated = try CLI.run(["evaluate", "--model", model, "--dataset", dataset, "--json"])
        try #require(evaluated.status == 0, "\(evaluated.combined)")
        let reports = try #require(
            try JSONSerialization.jsonObject(with: Data(evaluated.output.utf8)) as? [String: [String: Any]])
        let modelReport = try #require(reports["model"])
        #expect(modelReport["protocol"] as? String == "fedrec-eval-v1")
        #expect(reports["popularity"] != nil)
        let recall = try #require((modelReport["values"] as? [String: [String: Double]])?["recall"]?["20"])
        #expect(recall >= 0 && recall <= 1)
        // The text report names the model file and prints tables, never the weights.
        let table = try CLI.run(["evaluate", "--model", model, "--dataset", dataset])
        try #require(table.status == 0, "\(table.combined)")
        #expect(table.output.contains("model (\(model))") && table.output.contains("popularity baseline"))
        #expect(table.output.utf8.count < 5_000, "\(table.output.prefix(300))")
        // A refit model trained on the validation slice too: scoring it there is refused.
        let onValidation = try CLI.run(["evaluate", "--model", model, "--dataset", dataset, "--fold", "validation"])
        #expect(onValidation.status != 0)
        #expect(onValidation.combined.contains("was trained for the test fold"), "\(onValidation.combined)")

        let recalled = try CLI.run(["recall", "--model", model, "--dataset", dataset, "--user", "u3", "--k", "5", "--json"])
        try #require(recalled.status == 0, "\(recalled.combined)")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(recalled.output.utf8)) as? [[String: Any]])
        #expect(items.count == 5)
        #expect(items.map { $0["rank"] as? Int } == [1, 2, 3, 4, 5])
        let scores = items.compactMap { $0["score"] as? Double }
        #expect(scores == scores.sorted(by: >))

        let byIDs = try CLI.run(["recall", "--model", model, "--history-ids", "i1,i2", "--k", "3"])
        #expect(byIDs.status == 0, "\(byIDs.combined)")
        #expect(!byIDs.output.contains(" i1 ") && !byIDs.output.contains(" i2 "))

        let unknown = try CLI.run(["recall", "--model", model, "--history-ids", "i1,nope", "--k", "3"])
        #expect(unknown.status != 0)
        #expect(unknown.combined.contains("history item 'nope' is not in the model's catalogue"))

        // A data set other than the model's is refused.
        let other = folder.appendingPathComponent("other").path
        let otherSource = folder.appendingPathComponent("other.tsv")
        try String(contentsOf: source, encoding: .utf8).replacingOccurrences(of: "\t1\t", with: "\t2\t")
            .write(to: otherSource, atomically: true, encoding: .utf8)
        try #require(try CLI.run(["data", "import", otherSource.path, "--format", "generic", "--out", other]).status == 0)
        let mismatch = try CLI.run(["evaluate", "--model", model, "--dataset", other])
        #expect(mismatch.status != 0)
        #expect(mismatch.combined.contains("is not the one the model was trained on"))

        // A truncated model file is refused with a message naming the file.
        let truncated = folder.appendingPathComponent("truncated.safetensors")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: model))
        try bytes.prefix(bytes.count / 2).write(to: truncated)
        let broken = try CLI.run(["evaluate", "--model", truncated.path, "--dataset", dataset])
        #expect(broken.status != 0)
        #expect(broken.combined.contains("truncated.safetensors"))

        // The README's Python reader loads the same file (skipped when numpy/safetensors are not installed).
        if Self.pythonReaderAvailable {
            let python = Process()
            python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            python.arguments = ["python3", CLI.packageRoot.appendingPathComponent("scripts/read_model.py").path, model]
            let pipe = Pipe()
            python.standardOutput = pipe
            python.standardError = pipe
            try python.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            python.waitUntilExit()
            #expect(python.terminationStatus == 0, "\(output)")
            #expect(output.contains("user_tower.history_embedding"))
            #expect(output.contains("item_embeddings"))
        }
    }

    /// Whether `python3 -c "import numpy, safetensors"` works here (scripts/test.sh installs them when it can).
    static let pythonReaderAvailable: Bool = {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import numpy, safetensors"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }()
}
