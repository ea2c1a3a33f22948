import ArgumentParser
import FedRecData
import FedRecEvaluation
import FedRecModel
import FedRecRecall
import FedRecTensor
import Foundation

/// Index options shared by `recall` and `items add`.
struct IndexOptions: ParsableArguments {
    @Option(help: "Item index: auto (HNSW from --hnsw-threshold items on), exact or hnsw.")
    var index: String = "auto"

    @Option(parsing: .unconditional, help: "Catalogue size from which --index auto uses HNSW.")
    var hnswThreshold: Int = 500_000

    @Option(help: "HNSW file (default: the model file's path + '.hnsw').")
    var indexFile: String?

    @Option(name: .customLong("hnsw-m"), parsing: .unconditional, help: "HNSW build parameter M (neighbours per node).")
    var hnswM: Int = 32

    @Option(parsing: .unconditional, help: "HNSW search breadth while building.")
    var efConstruction: Int = 40

    @Option(parsing: .unconditional, help: "HNSW search breadth (efSearch) of a query.")
    var efSearch: Int = 128

    @Flag(
        help:
            "Rebuild the HNSW file even when it exists (one built from another item matrix or with other --hnsw-m / --ef-construction is rebuilt anyway)."
    )
    var rebuildIndex = false

    func validate() throws {
        guard ["auto", "exact", "hnsw"].contains(index) else {
            throw ValidationError("--index must be 'auto', 'exact' or 'hnsw', got '\(index)'")
        }
        guard hnswThreshold >= 0 else { throw ValidationError("--hnsw-threshold must be >= 0, got \(hnswThreshold)") }
        let maximum = HNSWParameters.maximumBreadth
        guard (2...HNSWParameters.maximumM).contains(hnswM) else {
            throw ValidationError("--hnsw-m must lie in 2...\(HNSWParameters.maximumM), got \(hnswM)")
        }
        guard (1...maximum).contains(efConstruction) else {
            throw ValidationError("--ef-construction must lie in 1...\(maximum), got \(efConstruction)")
        }
        guard (1...maximum).contains(efSearch) else {
            throw ValidationError("--ef-search must lie in 1...\(maximum), got \(efSearch)")
        }
    }

    func indexPath(model: String) -> String { indexFile ?? model + ".hnsw" }

    /// The index for `catalogue`. HNSW policy: a file built from another item matrix (stale: the model was
    /// retrained or items were added), with other build options (`--hnsw-m`, `--ef-construction`) or damaged is
    /// rebuilt and overwritten, with a note on stderr; a file at an
    /// explicit --index-file that is no fedrec HNSW index (a model, say) is an error unless --rebuild-index, and
    /// the index path may never be the model's own.
    func makeIndex(catalogue: RecallCatalogue, model: String) throws -> any ItemIndex {
        let useHNSW = index == "hnsw" || (index == "auto" && catalogue.count >= hnswThreshold)
        guard useHNSW else { return ExactIndex(items: catalogue.embeddings) }
        HNSWIndex.setThreadCount(1)
        let path = indexPath(model: model)
        func resolved(_ path: String) -> String { URL(fileURLWithPath: path).resolvingSymlinksInPath().path }
        guard resolved(path) != resolved(model) else {
            throw ValidationError("--index-file \(path) is the model file itself; name another file for the index")
        }
        let fingerprint = MatrixFingerprint.of(catalogue.embeddings)
        if !rebuildIndex, FileManager.default.fileExists(atPath: path) {
            let result = Result { () throws(RecallError) -> HNSWIndex in
                let index = try HNSWIndex.read(from: path, fingerprint: fingerprint, efSearch: efSearch)
                // The fingerprint is FNV-1a, not collision-resistant: the shape is checked on its own, since a
                // graph of another count or dimension would be searched out of bounds.
                guard index.count == catalogue.count, index.dimension == catalogue.embeddings.columns else {
                    throw RecallError(
                        code: .staleIndex,
                        message: "\(path): the index holds \(index.count) x \(index.dimension) vectors, the model "
                            + "\(catalogue.count) x \(catalogue.embeddings.columns)")
                }
                // Built with other options than asked (--hnsw-m, --ef-construction, defaults included): it would
                // be searched as if it were the graph asked for.
                guard index.parameters.m == hnswM, index.parameters.efConstruction == efConstruction else {
                    throw RecallError(
                        code: .staleIndex,
                        message: "\(path) was built with M \(index.parameters.m), efConstruction "
                            + "\(index.parameters.efConstruction); asked for M \(hnswM), efConstruction \(efConstruction)"
                    )
                }
                return index
            }
            switch result {
            case .success(let index): return index
            case .failure(let error):
                // The index is derived data beside the model: a stale or damaged one (e.g. written by an older
                // fedrec) is rebuilt, with a note; an I/O error, or a file that is no index at all, is reported.
                guard error.code == .staleIndex || error.code == .corruptIndex else { throw error }
                // At the default path (`MODEL.hnsw`) the file is ours whatever its state; an explicit
                // --index-file is overwritten unasked only if it is a fedrec HNSW index.
                guard error.code == .staleIndex || indexFile == nil || HNSWIndex.isIndexFile(at: path) else {
                    throw RecallError(
                        code: .corruptIndex,
                        message: "\(path) is not a fedrec HNSW index, so it is left alone: name another "
                            + "--index-file, or pass --rebuild-index to overwrite it")
                }
                writeUnchecked(STDERR_FILENO, "note: \(error.message); rebuilding it\n")
            }
        }
        let built = try HNSWIndex.build(
            items: catalogue.embeddings, parameters: HNSWParameters(m: hnswM, efConstruction: efConstruction),
            efSearch: efSearch)
        // Saving is a cache for the next run: a folder this process cannot write (a read-only model folder) costs
        // the next run a rebuild, not this one its answer.
        do { try built.write(to: path, fingerprint: fingerprint) } catch {
            writeUnchecked(STDERR_FILENO, "note: the index is used unsaved: \(error.message)\n")
        }
        return built
    }
}

/// Builds a `Recommender` from a model file and the command's options (the command and tests share it).
enum RecallSetup {
    /// The recall catalogue of `file` (read from `path`); titles or genres metadata that is unreadable or does not
    /// list one entry per trained item is an error naming the file, not a trap (nor blank titles).
    static func catalogue(of file: ModelFile, path: String) throws -> RecallCatalogue {
        let titles = SavedModel.titles(of: file)
        let genres = SavedModel.genres(of: file)
        let n = file.itemIDs.count
        let counts = [
            (SavedModel.MetadataKey.itemTitles, titles?.count), (SavedModel.MetadataKey.itemGenres, genres?.count),
        ]
        for (key, count) in counts {
            if count == nil, file.extraMetadata[key] != nil {
                throw ValidationError("model file '\(path)': metadata '\(key)' is not a JSON list of strings")
            }
            if let count, count != n {
                throw ValidationError(
                    "model file '\(path)': metadata '\(key)' lists \(count) entries for \(n) items")
            }
        }
        return RecallCatalogue(model: file, titles: titles, genres: genres)
    }

    static func recommender(model path: String, index: IndexOptions) throws -> (ModelFile, Recommender) {
        let file = try ModelLoading.model(at: path)
        let catalogue = try catalogue(of: file, path: path)
        let recommender = Recommender(
            catalogue: catalogue, model: file.model, index: try index.makeIndex(catalogue: catalogue, model: path))
        return (file, recommender)
    }

    /// One output row.
    struct Recommendation: Codable {
        var rank: Int
        var id: String
        var title: String
        var genres: [String]
        var score: Float
        var channel: String
        var channels: [String]
    }

    static func rows(_ result: RecallResult, catalogue: RecallCatalogue) -> [Recommendation] {
        result.items.enumerated().map { rank, item in
            let i = Int(item.item)
            return Recommendation(
                rank: rank + 1, id: catalogue.ids[i], title: catalogue.titles[i], genres: catalogue.genres[i],
                score: item.score, channel: item.channel.rawValue, channels: item.channels.map(\.rawValue))
        }
    }

    /// Splits a comma-separated list, trimming spaces; an empty or blank text is an empty list.
    static func list(_ text: String) -> [String] {
        text.split(separator: ",", omittingEmptySubsequences: true).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    static func json<T: Encodable>(_ value: T, pretty: Bool = false) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting =
            pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "null"
    }
}

extension RecallError {
    /// As a command-line error.
    var validation: ValidationError { ValidationError(message) }
}
