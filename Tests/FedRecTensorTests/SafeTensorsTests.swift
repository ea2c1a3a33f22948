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

    @Test func roundTripThroughAFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fedrec-st-\(UInt32.random(in: 0...UInt32.max))").path
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

    /// Replaces the header JSON (keeping the data) for malformed-header tests.
    func withHeader(_ json: String, data: [UInt8]) -> [UInt8] {
        var header = Array(json.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        return out + header + data
    }

    @Test(arguments: [
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 8, "ok"),
        (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, "badOffsets"),
        (#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}"#, 8, "unsupportedDType"),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 4, "truncated"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 4, "badOffsets"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, "badOffsets"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 8, "badOffsets"),
        (#"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#, 4, "corruptedHeader"),
        (#"["a"]"#, 0, "corruptedHeader"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#, 4, "corruptedHeader"),
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
        let error = #expect(throws: TensorFileError.self) { try SafeTensors(bytes: file.encoded(), file: "f", requireFinite: true) }
        #expect(error?.code == .nonFinite)
    }
}
