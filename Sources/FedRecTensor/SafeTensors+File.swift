internal import Foundation

/// One named F32 or I32 tensor of a safetensors file.
public struct SafeTensor: Sendable, Equatable {
    /// The element types fedrec reads and writes (both 4 bytes, little-endian).
    public enum DType: String, Sendable, Equatable {
        case f32 = "F32"
        case i32 = "I32"
    }

    public var name: String
    /// Dimensions, outermost first (`[]` for a scalar).
    public var shape: [Int]
    public var dtype: DType
    /// Row-major F32 values (`dtype == .f32`; empty for I32); `values.count == shape.product`.
    public var values: [Float]
    /// Row-major I32 values (`dtype == .i32`; empty for F32); `integers.count == shape.product`.
    public var integers: [Int32]

    /// An F32 tensor.
    public init(name: String, shape: [Int], values: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "tensor dimensions must be non-negative")
        precondition(shape.reduce(1, *) == values.count, "tensor \(name): shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        self.name = name
        self.shape = shape
        self.dtype = .f32
        self.values = values
        self.integers = []
    }

    /// An I32 tensor.
    public init(name: String, shape: [Int], integers: [Int32]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "tensor dimensions must be non-negative")
        precondition(shape.reduce(1, *) == integers.count, "tensor \(name): shape \(shape) needs \(shape.reduce(1, *)) values, got \(integers.count)")
        self.name = name
        self.shape = shape
        self.dtype = .i32
        self.values = []
        self.integers = integers
    }

    /// The number of elements.
    public var elementCount: Int { dtype == .f32 ? values.count : integers.count }

    /// The tensor as a matrix: 2-D as is, 1-D as one row.
    public var matrix: Matrix {
        switch shape.count {
        case 2: Matrix(rows: shape[0], columns: shape[1], storage: values)
        default: Matrix(rows: 1, columns: values.count, storage: values)
        }
    }
}

/// Reader and writer of the safetensors format (https://github.com/huggingface/safetensors), F32 and I32:
/// 8-byte little-endian header length `N`, `N` bytes of UTF-8 JSON
/// `{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}`
/// padded with spaces to a multiple of 8, then the little-endian data (offsets relative to its start,
/// tensors contiguous in file order, no gaps, no overlaps).
public struct SafeTensors: Sendable, Equatable {
    /// Tensors in file (data) order.
    public var tensors: [SafeTensor]
    /// String-to-string metadata (`__metadata__`).
    public var metadata: [String: String]

    public init(tensors: [SafeTensor], metadata: [String: String] = [:]) {
        precondition(Set(tensors.map(\.name)).count == tensors.count, "tensor names must be unique")
        precondition(!tensors.contains { $0.name == "__metadata__" }, "'__metadata__' is reserved")
        self.tensors = tensors
        self.metadata = metadata
    }

    public subscript(name: String) -> SafeTensor? {
        tensors.first { $0.name == name }
    }

    /// The tensor called `name` with exactly `shape`, or a `TensorFileError` naming `file`.
    public func tensor(_ name: String, shape: [Int], file: String) throws(TensorFileError) -> SafeTensor {
        guard let tensor = self[name] else {
            throw TensorFileError(code: .missingTensor, file: file, message: "missing tensor '\(name)'")
        }
        guard tensor.shape == shape else {
            throw TensorFileError(code: .wrongShape, file: file, message: "tensor '\(name)' has shape \(tensor.shape), expected \(shape)")
        }
        guard tensor.dtype == .f32 else {
            throw TensorFileError(code: .unsupportedDType, file: file, message: "tensor '\(name)' has dtype I32, expected F32")
        }
        return tensor
    }

    /// The tensor called `name` with exactly `shape` and `dtype`, or a `TensorFileError` naming `file`.
    public func tensor(_ name: String, shape: [Int], dtype: SafeTensor.DType, file: String) throws(TensorFileError) -> SafeTensor {
        guard let tensor = self[name] else {
            throw TensorFileError(code: .missingTensor, file: file, message: "missing tensor '\(name)'")
        }
        guard tensor.shape == shape else {
            throw TensorFileError(code: .wrongShape, file: file, message: "tensor '\(name)' has shape \(tensor.shape), expected \(shape)")
        }
        guard tensor.dtype == dtype else {
            throw TensorFileError(code: .unsupportedDType, file: file, message: "tensor '\(name)' has dtype \(tensor.dtype.rawValue), expected \(dtype.rawValue)")
        }
        return tensor
    }

    // MARK: Encoding

    /// The file bytes.
    public func encoded() -> [UInt8] {
        var header = "{"
        var offset = 0
        var first = true
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.keys.sorted().map { "\(Self.jsonString($0)):\(Self.jsonString(metadata[$0]!))" }.joined(separator: ",")
            header += "}"
            first = false
        }
        for tensor in tensors {
            let bytes = tensor.elementCount * 4
            if !first { header += "," }
            first = false
            header += "\(Self.jsonString(tensor.name)):{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":[\(tensor.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for tensor in tensors {
            #if _endian(little)
            if tensor.dtype == .f32 {
                tensor.values.withUnsafeBytes { out.append(contentsOf: $0) }
            } else {
                tensor.integers.withUnsafeBytes { out.append(contentsOf: $0) }
            }
            #else
            for value in tensor.values {
                withUnsafeBytes(of: value.bitPattern.littleEndian) { out.append(contentsOf: $0) }
            }
            for value in tensor.integers {
                withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
            }
            #endif
        }
        return out
    }

    /// Writes atomically: a temporary file in the same directory, then `rename`.
    public func write(to path: String) throws(TensorFileError) {
        let bytes = encoded()
        let url = URL(fileURLWithPath: path)
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))")
        do {
            try Data(bytes).write(to: temporary)
        } catch {
            throw TensorFileError(code: .io, file: path, message: "cannot write temporary file: \(error)")
        }
        if rename(temporary.path, path) != 0 {
            let code = errno
            try? FileManager.default.removeItem(at: temporary)
            throw TensorFileError(code: .io, file: path, message: "cannot rename temporary file into place (errno \(code))")
        }
    }

    // MARK: Decoding

    /// Reads and validates a file (see `init(bytes:file:requireFinite:)`).
    public static func read(from path: String, requireFinite: Bool = false) throws(TensorFileError) -> SafeTensors {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TensorFileError(code: .io, file: path, message: "cannot read: \(error.localizedDescription)")
        }
        return try SafeTensors(bytes: [UInt8](data), file: path, requireFinite: requireFinite)
    }

    /// Parses and validates: header length within the file, JSON object of tensor entries, dtype F32 or I32,
    /// shapes of non-negative integers, offsets in range, contiguous from 0 to the end of the data with no
    /// gaps or overlaps, `product(shape) * 4 == end - begin`, and (optionally) every value finite.
    public init(bytes: [UInt8], file: String, requireFinite: Bool = false) throws(TensorFileError) {
        func fail(_ code: TensorFileError.Code, _ message: String) -> TensorFileError {
            TensorFileError(code: code, file: file, message: message)
        }
        guard bytes.count >= 8 else { throw fail(.truncated, "file is \(bytes.count) bytes, shorter than the 8-byte header length") }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw fail(.truncated, "header length \(headerLength) exceeds the \(bytes.count - 8) bytes after it (truncated or corrupted)")
        }
        let dataStart = 8 + Int(headerLength)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart]))
        } catch {
            throw fail(.corruptedHeader, "header is not valid JSON")
        }
        guard let object = json as? [String: Any] else { throw fail(.corruptedHeader, "header is not a JSON object") }
        var metadata: [String: String] = [:]
        var entries: [(name: String, shape: [Int], begin: Int, end: Int, dtype: SafeTensor.DType)] = []
        for (name, value) in object {
            if name == "__metadata__" {
                guard let dictionary = value as? [String: Any] else { throw fail(.corruptedHeader, "__metadata__ is not an object") }
                for (key, item) in dictionary {
                    guard let string = item as? String else { throw fail(.corruptedHeader, "metadata '\(key)' is not a string") }
                    metadata[key] = string
                }
                continue
            }
            guard let entry = value as? [String: Any] else { throw fail(.corruptedHeader, "entry '\(name)' is not an object") }
            guard let dtype = entry["dtype"] as? String else { throw fail(.corruptedHeader, "tensor '\(name)' has no dtype") }
            guard let type = SafeTensor.DType(rawValue: dtype) else {
                throw fail(.unsupportedDType, "tensor '\(name)' has dtype \(dtype); only F32 and I32 are supported")
            }
            guard let shape = Self.integers(entry["shape"]), shape.allSatisfy({ $0 >= 0 }) else {
                throw fail(.corruptedHeader, "tensor '\(name)' has no valid shape")
            }
            guard let offsets = Self.integers(entry["data_offsets"]), offsets.count == 2 else {
                throw fail(.corruptedHeader, "tensor '\(name)' has no valid data_offsets")
            }
            entries.append((name, shape, offsets[0], offsets[1], type))
        }
        let dataLength = bytes.count - dataStart
        entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var expectedBegin = 0
        for entry in entries {
            guard entry.begin == expectedBegin, entry.end >= entry.begin else {
                throw fail(.badOffsets, "tensor '\(entry.name)' data_offsets [\(entry.begin), \(entry.end)] are not contiguous (expected begin \(expectedBegin))")
            }
            var elements = 1
            for dimension in entry.shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
                guard !overflow else { throw fail(.corruptedHeader, "tensor '\(entry.name)' shape overflows") }
                elements = product
            }
            guard elements.multipliedReportingOverflow(by: 4) == (entry.end - entry.begin, false) else {
                throw fail(.badOffsets, "tensor '\(entry.name)' shape \(entry.shape) needs \(elements * 4) bytes, offsets give \(entry.end - entry.begin)")
            }
            guard entry.end <= dataLength else {
                throw fail(.truncated, "tensor '\(entry.name)' ends at byte \(entry.end) of the data, which has only \(dataLength) bytes (truncated)")
            }
            expectedBegin = entry.end
        }
        guard expectedBegin == dataLength else {
            throw fail(.badOffsets, "\(dataLength - expectedBegin) bytes after the last tensor are not covered by any tensor")
        }
        var tensors: [SafeTensor] = []
        tensors.reserveCapacity(entries.count)
        for entry in entries {
            let count = (entry.end - entry.begin) / 4
            if entry.dtype == .i32 {
                var integers = [Int32](repeating: 0, count: count)
                bytes.withUnsafeBytes { raw in
                    integers.withUnsafeMutableBytes { target in
                        target.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[(dataStart + entry.begin)..<(dataStart + entry.end)]))
                    }
                }
                #if !_endian(little)
                for i in 0..<count { integers[i] = Int32(littleEndian: integers[i]) }
                #endif
                tensors.append(SafeTensor(name: entry.name, shape: entry.shape, integers: integers))
                continue
            }
            var values = [Float](repeating: 0, count: count)
            bytes.withUnsafeBytes { raw in
                values.withUnsafeMutableBytes { target in
                    target.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[(dataStart + entry.begin)..<(dataStart + entry.end)]))
                }
            }
            #if !_endian(little)
            for i in 0..<count { values[i] = Float(bitPattern: UInt32(littleEndian: values[i].bitPattern)) }
            #endif
            if requireFinite, let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw fail(.nonFinite, "tensor '\(entry.name)' holds a non-finite value at element \(bad)")
            }
            tensors.append(SafeTensor(name: entry.name, shape: entry.shape, values: values))
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    private static func integers(_ value: Any?) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        var result: [Int] = []
        for item in array {
            guard let number = item as? NSNumber else { return nil }
            let double = number.doubleValue
            guard double == double.rounded(), abs(double) < 9e15 else { return nil }
            result.append(number.intValue)
        }
        return result
    }

    private static func jsonString(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
