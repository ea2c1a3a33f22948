import ArgumentParser
import FedRecData
import Foundation

/// `fedrec data`: import a source into a data-set folder, export the evaluation split.
struct DataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Import, clean and split behaviour data.",
        subcommands: [DataImportCommand.self, DataSplitCommand.self]
    )
}

/// Parses a `--format` value, or throws a `ValidationError` listing the accepted ones.
func parseSourceFormat(_ text: String?) throws -> SourceFormat? {
    guard let text else { return nil }
    guard let format = SourceFormat(rawValue: text) else {
        let known = SourceFormat.allCases.map(\.rawValue).joined(separator: ", ")
        throw ValidationError("unknown --format '\(text)'; expected one of: \(known)")
    }
    return format
}

/// Options shared by commands that import a source.
struct SourceImportOptions: ParsableArguments {
    @Option(help: "Source format: ml-100k, ml-latest-small or generic (default: detected from the folder's files).")
    var format: String?

    @Option(name: .customLong("items"), help: "Generic format: items file with item, title, genres/tags columns.")
    var itemsFile: String?

    @Option(parsing: .unconditional, help: "Hash buckets for title words.")
    var titleBuckets: Int = 256

    @Option(parsing: .unconditional, help: "Hash buckets for tags.")
    var tagBuckets: Int = 256

    @Flag(help: "Skip malformed rows (counted and reported) instead of failing.")
    var skipInvalid = false

    func validate() throws {
        _ = try parseSourceFormat(format)
        guard titleBuckets >= 1 && titleBuckets <= 1 << 24 else {
            throw ValidationError("--title-buckets must be in 1...16777216, got \(titleBuckets)")
        }
        guard tagBuckets >= 1 && tagBuckets <= 1 << 24 else {
            throw ValidationError("--tag-buckets must be in 1...16777216, got \(tagBuckets)")
        }
        if let itemsFile, !FileManager.default.fileExists(atPath: itemsFile) {
            throw ValidationError("--items file '\(itemsFile)' does not exist")
        }
    }

    var importOptions: ImportOptions {
        ImportOptions(
            titleBuckets: titleBuckets, tagBuckets: tagBuckets, skipInvalid: skipInvalid, itemsFile: itemsFile)
    }

    func run(source: String) throws -> ImportResult {
        try DatasetImporter.importDataset(format: try parseSourceFormat(format), source: source, options: importOptions)
    }
}

struct DataImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import a MovieLens or generic CSV/TSV source into a data-set folder.",
        discussion: """
            Cleans per fedrec-eval-v1 (de-duplication, users with <5 interactions dropped), builds item and \
            user features and writes the folder atomically (manifest.json with SHA-256 checksums plus TSV files).
            """
    )

    @Argument(help: "Source folder (or, for the generic format, the interactions file).")
    var source: String

    @Option(name: .shortAndLong, help: "Output data-set folder.")
    var out: String

    @Flag(help: "Replace an existing non-empty output folder.")
    var force = false

    @OptionGroup var options: SourceImportOptions

    func validate() throws {
        guard FileManager.default.fileExists(atPath: source) else {
            throw ValidationError("source '\(source)' does not exist")
        }
        guard !out.isEmpty else { throw ValidationError("--out is empty: name the data-set folder to write") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) else { return }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
        guard isDirectory.boolValue, !entries.isEmpty else {
            if !isDirectory.boolValue {
                throw ValidationError(
                    "output '\(out)' exists and is not a folder; "
                        + (force ? "--force replaces only an earlier import" : "use another --out"))
            }
            return
        }
        guard force else {
            throw ValidationError("output '\(out)' exists and is not an empty folder; use --force to replace it")
        }
        // --force replaces an earlier import and nothing else: never the source, a folder holding it or the
        // current folder, nor any folder without a data set's manifest.
        let target = canonical(out)
        func within(_ path: String) -> Bool { path == target || path.hasPrefix(target + "/") }
        for input in [source, options.itemsFile].compactMap({ $0 }) where within(canonical(input)) {
            throw ValidationError("--out '\(out)' holds the input '\(input)', which --force would delete")
        }
        if within(canonical(".")) {
            throw ValidationError("--out '\(out)' is the current folder or holds it, which --force would delete")
        }
        guard Self.isDatasetFolder(out) else {
            throw ValidationError(
                "--out '\(out)' is not a data-set folder (no manifest.json of format "
                    + "'\(DatasetManifest.formatName)'): --force replaces only an earlier import; use an empty or "
                    + "new folder")
        }
    }

    /// Whether `folder` holds a `manifest.json` whose format is a fedrec data set's (any version).
    static func isDatasetFolder(_ folder: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: folder + "/manifest.json"),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return false }
        return object["format"] as? String == DatasetManifest.formatName
    }

    func run() async throws {
        let result = try options.run(source: source)
        let dataset = try result.write(to: out, force: force)
        print(summary(of: dataset.manifest, split: dataset.split))
        for warning in contentGaps(result.content) { print("warning: \(warning)") }
        print("written: \(out)")
    }
}

struct DataSplitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Export the fedrec-eval-v1 split (train.tsv, test.tsv, items.tsv).",
        discussion: "Reads a data-set folder (--dataset) or imports a source folder on the fly (--source)."
    )

    @Option(help: "Data-set folder written by 'fedrec data import'.")
    var dataset: String?

    @Option(help: "Raw source folder to import and split in one go (instead of --dataset).")
    var source: String?

    @Option(name: .shortAndLong, help: "Folder for train.tsv, test.tsv and items.tsv.")
    var out: String

    @Flag(help: "Replace train.tsv, test.tsv and items.tsv already in the output folder.")
    var force = false

    @OptionGroup var options: SourceImportOptions

    func validate() throws {
        guard (dataset == nil) != (source == nil) else {
            throw ValidationError("give exactly one of --dataset and --source")
        }
        if let path = dataset ?? source, !FileManager.default.fileExists(atPath: path) {
            throw ValidationError("'\(path)' does not exist")
        }
        // A source folder (or the folder of a source or items file) holds inputs of the same names, such as a
        // generic source's items.tsv: never written over, --force or not.
        var inputFolders: [String] = []
        for path in [source, options.itemsFile].compactMap({ $0 }) {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
            inputFolders.append(isDirectory.boolValue ? path : (path as NSString).deletingLastPathComponent)
        }
        let clashing = SplitExport.fileNames.filter { FileManager.default.fileExists(atPath: out + "/" + $0) }
        if inputFolders.contains(where: { canonical($0) == canonical(out) }), !clashing.isEmpty {
            throw ValidationError(
                "--out '\(out)' is the folder of the source files and holds \(clashing.joined(separator: ", ")); "
                    + "write the split files elsewhere")
        }
    }

    func run() async throws {
        let content: DatasetContent
        let split: Split
        let manifest: DatasetManifest
        if let dataset {
            let loaded = try Dataset.load(from: dataset)
            (content, split, manifest) = (loaded.content, loaded.split, loaded.manifest)
        } else {
            let result = try options.run(source: source!)
            (content, split, manifest) = (result.content, result.split, result.manifest)
        }
        try SplitExport.write(content, to: out, force: force)
        print(summary(of: manifest, split: split))
        print("written: \(SplitExport.fileNames.map { out + "/" + $0 }.joined(separator: ", "))")
    }
}

/// Users and items the source's content files leave out, when it has such files: they import without the
/// features those files give (not an error: MovieLens' files are optional per user and item).
func contentGaps(_ content: DatasetContent) -> [String] {
    var gaps: [String] = []
    if !content.userAttributeNames.isEmpty {
        let missing = content.userAttributes.filter { $0.allSatisfy(\.isEmpty) }.count
        if missing > 0 {
            gaps.append("\(missing) of \(content.userIDs.count) users have no attributes (no row in the users file)")
        }
    }
    let untitled = content.titles.filter(\.isEmpty).count
    if untitled > 0, untitled < content.titles.count {
        gaps.append("\(untitled) of \(content.titles.count) catalogue items have no title (no row in the items file)")
    }
    return gaps
}

/// `path` absolute, standardized and with symlinks resolved (the empty path is the current folder), so two
/// spellings of one folder compare equal.
private func canonical(_ path: String) -> String {
    URL(fileURLWithPath: path.isEmpty ? "." : path).standardizedFileURL.resolvingSymlinksInPath().path
}

/// A short human summary of an import and its split.
func summary(of manifest: DatasetManifest, split: Split) -> String {
    let c = manifest.counts
    let s = split.counts
    var lines = [
        "source format: \(manifest.sourceFormat.rawValue)",
        // Only generic sources leave out rows by value; MovieLens keeps every rating row (fedrec-eval-v1).
        "rows: \(c.rawRows) read, \(c.skippedRows) skipped, "
            + (manifest.sourceFormat == .generic ? "\(c.nonPositiveValueRows) with value <= 0 left out, " : "")
            + "\(c.duplicatesRemoved) duplicates removed, \(c.interactionsKept) kept",
        "users: \(c.usersKept) kept, \(c.usersDropped) dropped (<5 interactions)",
        "items: \(c.catalogueItems) in the catalogue, \(c.contentOnlyItems) content-only; "
            + "features: \(c.itemFeatureColumns) item, \(c.userFeatureColumns) user columns",
        "split: \(s.train) train (\(s.fit) fit + \(s.validation) validation), \(s.test) test; "
            + "\(s.itemsWithTrain) items with a training interaction",
    ]
    if c.tagsAfterFitPeriod > 0 {
        lines.append("tags: \(c.tagsAfterFitPeriod) left out, applied after their user's fit period (held out)")
    }
    for reason in manifest.skippedReasons {
        lines.append("skipped: \(reason.count) x \(reason.reason)" + skippedLines(reason))
    }
    if !manifest.checksum.isEmpty { lines.append("checksum: \(manifest.checksum)") }
    return lines.joined(separator: "\n")
}

/// " (line 12)", " (lines 3, 7, 9)" or " (lines 3, 7, 9, 12, 15, ...)" for a skip reason whose lines are known.
func skippedLines(_ reason: DatasetManifest.SkipReason) -> String {
    guard let lines = reason.lines, !lines.isEmpty else { return "" }
    let more = reason.count > lines.count ? ", ..." : ""
    return " (line\(lines.count > 1 || !more.isEmpty ? "s" : "") "
        + lines.map(String.init).joined(separator: ", ") + more + ")"
}
