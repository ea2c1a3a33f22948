import FedRecTensor
import Foundation
import Testing

@Suite struct SafeTensorsTests {
    static let sample = SafeTensors(
        tensors: [
            SafeTensor(name: "a", shape: [2, 3], values: [1, -2, 3.5, .pi, 0, -0]),
            SafeTensor(name: "b.bias", shape: [3], values: [7, 8, 9]),
            SafeTensor(name: "empty", shape: [0, 4], values: []),
        ],
        metadata: ["format": "test", "quote": "say \"hi\"\n"])

    /// A fresh path in the temporary directory (nothing created there).
    static func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("fedrec-st-\(UInt32.random(in: 0...UInt32.max))")
            .path
    }

    @Test func roundTripThroughAFile() throws {
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Self.sample.write(to: path)
        let read = try SafeTensors.read(from: path)
        #expect(read.metadata == Self.sample.metadata)
        for tensor in Self.sample.tensors {
            let other = try #require(read[tensor.name])
            #expect(other.shape == tensor.shape)
            #expect(other.values.map(\.bitPattern) == tensor.values.map(\.bitPattern))
        }
        let bytes = Self.sample.encoded()
        let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
        #expect(headerLength % 8 == 0)
        #expect(bytes.count == 8 + headerLength + 4 * 9)
    }

    /// Metadata with every control character, quotes, backslashes and multi-byte UTF-8 survives a round trip,
    /// and the file holds exactly `encoded()` (the streaming writer and the in-memory encoder agree).
    @Test func metadataEscapingAndStreamedBytes() throws {
        let awkward = String((0..<0x20).map { Character(Unicode.Scalar(UInt8($0))) }) + "\"\\/ é 映画 🎬 \u{7f}"
        let file = SafeTensors(
            tensors: [
                SafeTensor(name: "w \"q\"", shape: [2], values: [1, 2]),
                SafeTensor(name: "i", shape: [3], integers: [4, -5, 6]),
            ],
            metadata: ["awkward": awkward, "ключ": "value", "": "empty key"])
        let path = Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try file.write(to: path)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: path))) == file.encoded())
        let read = try SafeTensors.read(from: path)
        #expect(read.metadata == file.metadata)
        #expect(read["w \"q\""]?.values == [1, 2])
        #expect(read["i"]?.integers == [4, -5, 6])
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int).map { $0 & 0o022 } == 0)
    }

    /// A write that cannot complete leaves the file already at the path untouched and no temporary behind.
    @Test func failedWriteKeepsTheSavedFile() throws {
        let directory = Self.temporaryPath()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/model.safetensors"
        try Self.sample.write(to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        // Renaming a file over a non-empty directory fails after the temporary file was written.
        let blocked = directory + "/blocked"
        try FileManager.default.createDirectory(atPath: blocked + "/inside", withIntermediateDirectories: true)
        #expect(throws: TensorFileError.self) { try Self.sample.write(to: blocked) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["blocked", "model.safetensors"])
        #expect(throws: TensorFileError.self) { try Self.sample.write(to: directory + "/missing/model.safetensors") }
    }

    /// Writing over a recycled spare (longer or shorter than the new file) gives exactly `encoded()` at the
    /// path and consumes the spare; without a spare the write falls back to a new file.
    @Test func recycledSpareHoldsExactlyTheNewFile() throws {
        let directory = Self.temporaryPath()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spare = directory + "/.spare"
        for spareLength in [0, 5, Self.sample.encoded().count + 1000] {
            try Data(repeating: 0xAB, count: spareLength).write(to: URL(fileURLWithPath: spare))
            let path = directory + "/file-\(spareLength).safetensors"
            try Self.sample.write(to: path, recycling: spare)
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: path))) == Self.sample.encoded())
            #expect(!FileManager.default.fileExists(atPath: spare))
        }
        try Self.sample.write(to: directory + "/fresh.safetensors", recycling: spare)
        #expect(
            try Array(Data(contentsOf: URL(fileURLWithPath: directory + "/fresh.safetensors"))) == Self.sample.encoded()
        )
    }

    /// Replaces the header JSON (keeping the data) for malformed-header tests.
    func withHeader(_ json: String, data: [UInt8]) -> [UInt8] {
        var header = Array(json.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        return out + header + data
    }

    @Test(
        arguments: [
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 8, "ok"),
            (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, "badOffsets"),
            (#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}"#, 8, "unsupportedDType"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 4, "truncated"),
            (
                #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                4, "badOffsets"
            ),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, "badOffsets"),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 8, "badOffsets"),
            (#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#, 4, "corruptedHeader"),
            (#"["a"]"#, 0, "corruptedHeader"),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#, 4, "corruptedHeader"),
            // A shape whose byte count overflows: refused, and the message says so instead of overflowing itself.
            (#"{"a":{"dtype":"F32","shape":[1000000000000000,4000],"data_offsets":[0,0]}}"#, 0, "badOffsets"),
        ] as [(String, Int, String)])
    func validation(header: String, dataBytes: Int, expected: String) {
        let bytes = withHeader(header, data: [UInt8](repeating: 0, count: dataBytes))
        do {
            _ = try SafeTensors(bytes: bytes, file: "x.safetensors")
            #expect(expected == "ok")
        } catch {
            #expect(error.code.description == expected, "\(error)")
            #expect(error.file == "x.safetensors")
        }
    }

    @Test func headerLengthBeyondTheFileIsTruncation() {
        var bytes = Self.sample.encoded()
        bytes = Array(bytes.prefix(20))
        #expect(throws: TensorFileError.self) { try SafeTensors(bytes: bytes, file: "f") }
        #expect((try? SafeTensors(bytes: [1, 2, 3], file: "f")) == nil)
    }

    @Test func nonFiniteValuesCanBeRejected() throws {
        let file = SafeTensors(tensors: [SafeTensor(name: "x", shape: [2], values: [1, .nan])])
        _ = try SafeTensors(bytes: file.encoded(), file: "f")
        let error = #expect(throws: TensorFileError.self) {
            try SafeTensors(bytes: file.encoded(), file: "f", requireFinite: true)
        }
        #expect(error?.code == .nonFinite)
        // The branch-free check agrees with isFinite on every class of value.
        for value: Float in [0, -0, 1, -1, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        {
            #expect(FastMath.allFinite([1, value, 2]))
        }
        for value: Float in [.nan, -.nan, .infinity, -.infinity, .signalingNaN] {
            #expect(!FastMath.allFinite([1, value, 2]))
        }
    }
}
