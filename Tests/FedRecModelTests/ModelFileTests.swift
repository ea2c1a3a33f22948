import FedRecModel
import FedRecTensor
import Foundation
import Testing

@Suite struct ModelFileTests {
    func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("fedrec-model-test-\(name)-\(UInt32.random(in: 0...UInt32.max)).safetensors").path
    }

    @Test func roundTripIsBitExact() throws {
        let fixture = Fixture()
        let model = TwoTowerModel(configuration: fixture.configuration, seed: 11)
        let ids = (0..<12).map { "item-\($0)\u{e9}\"" }
        let file = ModelFile(model: model, itemFeatures: fixture.itemFeatures, datasetChecksum: "abc123", itemIDs: ids, extraMetadata: ["training": "{\"epochs\":7}"])
        let path = temporaryPath("roundtrip")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try file.write(to: path)
        let read = try ModelFile.read(from: path)
        #expect(read.model == model)
        #expect(read.itemEmbeddings == model.itemEmbeddings(itemFeatures: fixture.itemFeatures))
        #expect(read.itemIDs == ids)
        #expect(read.datasetChecksum == "abc123")
        #expect(read.extraMetadata == ["training": "{\"epochs\":7}"])
        let raw = try SafeTensors.read(from: path)
        #expect(raw.metadata["format"] == "fedrec-model")
        #expect(raw.metadata["format_version"] == "1")
        #expect(raw["item_embeddings"]?.shape == [12, 6])
        #expect(raw["item_tower.content_projection.bias"]?.shape == [6])
    }

    /// A pre-encoded catalogue gives the same bytes as encoding on write, and one made for other ids is ignored
    /// rather than written under this file's ids.
    @Test func preEncodedCatalogueIsUsedOnlyWhenItMatches() throws {
        let fixture = Fixture()
        let model = TwoTowerModel(configuration: fixture.configuration, seed: 11)
        let ids = (0..<12).map { "item-\($0)\"" }
        var file = ModelFile(model: model, itemFeatures: fixture.itemFeatures, datasetChecksum: "abc", itemIDs: ids)
        let plain = temporaryPath("plain"), cached = temporaryPath("cached"), stale = temporaryPath("stale")
        defer { for path in [plain, cached, stale] { try? FileManager.default.removeItem(atPath: path) } }
        try file.write(to: plain)
        file.catalogueJSON = ModelFile.CatalogueJSON(itemIDs: ids, featureNames: nil)
        try file.write(to: cached)
        #expect(try Data(contentsOf: URL(fileURLWithPath: cached)) == Data(contentsOf: URL(fileURLWithPath: plain)))
        file.catalogueJSON = ModelFile.CatalogueJSON(itemIDs: ids.reversed(), featureNames: nil)
        try file.write(to: stale)
        #expect(try ModelFile.read(from: stale).itemIDs == ids)
    }

    @Test func truncatedAndCorruptedFilesGiveClearErrors() throws {
        let fixture = Fixture()
        let model = TwoTowerModel(configuration: fixture.configuration, seed: 11)
        let file = ModelFile(model: model, itemFeatures: fixture.itemFeatures, datasetChecksum: "x", itemIDs: (0..<12).map(String.init))
        let path = temporaryPath("errors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try file.write(to: path)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))

        try Data(bytes.dropLast(100)).write(to: URL(fileURLWithPath: path))
        let truncated = #expect(throws: TensorFileError.self) { try ModelFile.read(from: path) }
        #expect(truncated?.code == .truncated)
        #expect(truncated?.file == path)

        var corrupted = bytes
        corrupted[9] = UInt8(ascii: "#")
        try Data(corrupted).write(to: URL(fileURLWithPath: path))
        let header = #expect(throws: TensorFileError.self) { try ModelFile.read(from: path) }
        #expect(header?.code == .corruptedHeader)

        // A valid safetensors file that lacks a tensor.
        var partial = try SafeTensors(bytes: bytes, file: path)
        partial.tensors.removeAll { $0.name == "user_tower.mlp.2.weight" }
        try partial.write(to: path)
        let missing = #expect(throws: TensorFileError.self) { try ModelFile.read(from: path) }
        #expect(missing?.code == .missingTensor)
        #expect(missing?.message.contains("user_tower.mlp.2.weight") == true)
    }

    /// A configuration edited into a file skips the initialiser's checks: reading refuses it (release builds of
    /// the numeric modules drop preconditions, so a bad maxHistory used to crash evaluate and recall).
    @Test(arguments: [
        ("\"maxHistory\":-1", "maxHistory"), ("\"maxHistory\":0", "maxHistory"),
        ("\"sampledNegatives\":0", "sampledNegatives"), ("\"userFeatureCount\":9223372036854775807", "feature counts"),
    ])
    func editedConfigurationsAreRefused(edit: String, field: String) throws {
        let fixture = Fixture()
        let model = TwoTowerModel(configuration: fixture.configuration, seed: 11)
        let path = temporaryPath("config")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try ModelFile(model: model, itemFeatures: fixture.itemFeatures, datasetChecksum: "x", itemIDs: (0..<12).map(String.init))
            .write(to: path)
        var file = try SafeTensors.read(from: path)
        var json = try #require(file.metadata["configuration"])
        let key = String(edit.prefix { $0 != ":" })
        if let range = json.range(of: key + #":[^,}]*"#, options: .regularExpression) {
            json.replaceSubrange(range, with: edit)
        } else {
            json.insert(contentsOf: edit + ",", at: json.index(after: json.startIndex))
        }
        file.metadata["configuration"] = json
        try file.write(to: path)
        let error = #expect(throws: TensorFileError.self) { try ModelFile.read(from: path) }
        #expect(error?.code == .badMetadata && error?.message.contains(field) == true, "\(String(describing: error))")
    }

    /// A diverged model is refused at writing, naming the tensor, and an earlier file stays as it was.
    @Test func nonFiniteWeightsAreNotWritten() throws {
        let fixture = Fixture()
        var model = TwoTowerModel(configuration: fixture.configuration, seed: 11)
        let path = temporaryPath("nan")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ids = (0..<12).map(String.init)
        try ModelFile(model: model, itemFeatures: fixture.itemFeatures, datasetChecksum: "x", itemIDs: ids).write(to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        model.itemTower.contentBias.storage[0] = .nan
        let error = #expect(throws: TensorFileError.self) {
            try ModelFile(model: model, itemFeatures: fixture.itemFeatures, datasetChecksum: "x", itemIDs: ids).write(to: path)
        }
        #expect(error?.code == .nonFinite && error?.message.contains("non-finite") == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    }
}
