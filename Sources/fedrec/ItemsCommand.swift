import ArgumentParser
import FedRecData
import FedRecModel
import FedRecRecall
import Foundation

struct ItemsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "items",
        abstract: "Manage the model's item catalogue.",
        subcommands: [ItemsAddCommand.self]
    )
}

struct ItemsAddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Add items after training: content features through the item tower, no retraining.",
        discussion: """
            Featurises each item exactly as 'fedrec data import' does (genres, year, title words, tags) from the \
            feature names stored in the model file, embeds it with the item tower's content projection (a new item \
            has no ID embedding) and appends it to the model's catalogue. Either one item (--id, --title, \
            --genres, --tags, --year) or every content-only item of the model's data set (--dataset: movies \
            nobody rated). An HNSW file beside the model becomes stale and is rebuilt by the next recall.
            """
    )

    @Option(help: "Model file to extend (rewritten in place unless --out).")
    var model: String

    @Option(help: "Write the extended model here instead.")
    var out: String?

    @Option(help: "New item id.")
    var id: String?

    @Option(help: "Title, e.g. \"Dune (2021)\" (a trailing year sets the year).")
    var title: String?

    @Option(help: "Genres separated by '|'.")
    var genres: String = ""

    @Option(help: "Tags separated by ','.")
    var tags: String = ""

    @Option(parsing: .unconditional, help: "Release year (default: from the title).")
    var year: Int?

    @Option(help: "Add every content-only item of this data set (must be the model's).")
    var dataset: String?

    func validate() throws {
        guard (id != nil) != (dataset != nil) else { throw ValidationError("give exactly one of --id or --dataset") }
        if id != nil, title == nil { throw ValidationError("--id needs --title") }
        if let id, id.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--id must not be empty") }
        // Ids are written one per line and tab-separated elsewhere (--input files, split exports).
        if let id, id.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw ValidationError("--id \(id.debugDescription) holds a control character (tab, line break, ...)")
        }
        // --history-ids, --exclude and --input split on commas and trim spaces: such an id could never be named.
        if let id, id.contains(",") || id != id.trimmingCharacters(in: .whitespaces) {
            throw ValidationError(
                "--id \(id.debugDescription) holds a comma or surrounding spaces, which recall cannot read back")
        }
        if let title, title.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--title must not be empty")
        }
        if let year, !Self.releaseYears.contains(year) {
            throw ValidationError("--year must lie in \(Self.releaseYears), got \(year)")
        }
    }

    /// Years `--year` takes: a release year (the importer's year buckets run from before 1910 to the 2010s).
    static let releaseYears = 1800...2100

    func run() async throws {
        var file = try ModelLoading.model(at: model)
        var added = 0
        do {
            if let id, let title {
                try ColdItems.add(
                    to: &file, id: id, title: title,
                    genres: genres.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
                        !$0.isEmpty
                    },
                    tags: RecallSetup.list(tags), year: year)
                added = 1
            } else if let dataset {
                let data = try ModelLoading.dataset(at: dataset, matching: file, readsUserFeatures: false)
                let known = Set(file.itemIDs + file.addedItems.ids)
                for item in data.contentOnlyItems where !known.contains(item.id) {
                    // The importer's own feature row (title, genres, year and tags), not a re-featurisation.
                    try ColdItems.add(
                        to: &file, id: item.id, title: item.title, genres: item.genres,
                        features: item.features.map { (column: $0.column, value: $0.value) },
                        featureNames: data.itemFeatureNames)
                    added += 1
                }
            }
        } catch let error as RecallError {
            throw error.validation
        }
        let target = out ?? model
        try file.write(to: target)
        print(
            "added \(added) item(s); \(target) now has \(file.itemIDs.count) trained + \(file.addedItems.count) added items"
        )
    }
}
