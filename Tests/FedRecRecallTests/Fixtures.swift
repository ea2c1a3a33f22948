import FedRecData
import FedRecModel
import FedRecRecall
import FedRecTensor
import Foundation

/// A small seeded model file with popularity and content features: 60 items, three genres; items of genre g
/// are `i % 3 == g`, popularity falls with the index, items 0, 1, 2 have titles "Alpha (1990)" etc.
enum Fixture {
    static let genreNames = ["Action", "Comedy", "Drama"]
    static let featureNames: [String] =
        genreNames.map { "genre:\($0)" } + ["year:unknown", "year:before-1910"] + (0...10).map { "year:\(1910 + 10 * $0)s" }
        + (0..<16).map { "title#\($0)" }

    static func title(_ i: Int) -> String {
        i < 3 ? ["Alpha (1990)", "Beta (1991)", "alpha (1990) "][i] : "Movie \(i) (\(1950 + i))"
    }

    static func modelFile(items n: Int = 60, dimension: Int = 8, withOptionalParts: Bool = true) -> ModelFile {
        let featurizer = try! ItemFeaturizer(featureNames: featureNames)
        let rows = (0..<n).map { i in
            featurizer.features(title: title(i), genres: [genreNames[i % 3]]).map { (column: Int($0.column), value: $0.value) }
        }
        let features = SparseMatrix(columns: featureNames.count, rows: rows)
        let configuration = TwoTowerConfiguration(
            dimension: dimension, hiddenWidth: 16, itemCount: n, itemFeatureCount: featureNames.count)
        let model = TwoTowerModel(configuration: configuration, seed: 7)
        return ModelFile(
            model: model, itemFeatures: features, datasetChecksum: "fixture", itemIDs: (0..<n).map { "i\($0)" },
            itemPopularity: withOptionalParts ? (0..<n).map { Float(n - $0) } : nil,
            itemContent: withOptionalParts ? ItemContent(featureNames: featureNames, features: features) : nil)
    }

    static func recommender(_ file: ModelFile) -> Recommender {
        let catalogue = RecallCatalogue(
            model: file, titles: (0..<file.itemIDs.count).map(title),
            genres: (0..<file.itemIDs.count).map { [genreNames[$0 % 3]] })
        return Recommender(catalogue: catalogue, model: file.model)
    }

    static func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("fedrec-recall-\(UUID().uuidString)-\(name)").path
    }

    /// Rows drawn standard normal then L2-normalised.
    static func gaussianUnitRows(_ rows: Int, _ columns: Int, seed: UInt64) -> Matrix {
        var rng = SplitMix64(seed: seed)
        var storage = (0..<(rows * columns)).map { _ in rng.nextGaussian() }
        for r in 0..<rows {
            var norm: Float = 0
            for c in 0..<columns { norm += storage[r * columns + c] * storage[r * columns + c] }
            for c in 0..<columns { storage[r * columns + c] /= norm.squareRoot() }
        }
        return Matrix(rows: rows, columns: columns, storage: storage)
    }
}
