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
        precondition(
            shape.reduce(1, *) == values.count,
            "tensor \(name): shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        self.name = name
        self.shape = shape
        self.dtype = .f32
        self.values = values
        self.integers = []
    }

    /// An I32 tensor.
    public init(name: String, shape: [Int], integers: [Int32]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "tensor dimensions must be non-negative")
        precondition(
            shape.reduce(1, *) == integers.count,
            "tensor \(name): shape \(shape) needs \(shape.reduce(1, *)) values, got \(integers.count)")
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
            throw TensorFileError(
                code: .wrongShape, file: file, message: "tensor '\(name)' has shape \(tensor.shape), expected \(shape)")
        }
        guard tensor.dtype == .f32 else {
            throw TensorFileError(
                code: .unsupportedDType, file: file, message: "tensor '\(name)' has dtype I32, expected F32")
        }
        return tensor
    }

    /// The tensor called `name` with exactly `shape` and `dtype`, or a `TensorFileError` naming `file`.
    public func tensor(_ name: String, shape: [Int], dtype: SafeTensor.DType, file: String) throws(TensorFileError)
        -> SafeTensor
    {
        guard let tensor = self[name] else {
            throw TensorFileError(code: .missingTensor, file: file, message: "missing tensor '\(name)'")
        }
        guard tensor.shape == shape else {
            throw TensorFileError(
                code: .wrongShape, file: file, message: "tensor '\(name)' has shape \(tensor.shape), expected \(shape)")
        }
        guard tensor.dtype == dtype else {
            throw TensorFileError(
                code: .unsupportedDType, file: file,
                message: "tensor '\(name)' has dtype \(tensor.dtype.rawValue), expected \(dtype.rawValue)")
        }
        return tensor
    }

    // MARK: Encoding

    /// The header: its little-endian length, then the JSON padded with spaces to a multiple of 8.
    func header() -> [UInt8] {
        var json: [UInt8] = [UInt8(ascii: "{")]
        json.reserveCapacity(256 + metadata.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count + 8 })
        var offset = 0
        var first = true
        if !metadata.isEmpty {
            json += Array(#""__metadata__":{"#.utf8)
            for (index, key) in metadata.keys.sorted().enumerated() {
                if index > 0 { json.append(UInt8(ascii: ",")) }
                Self.appendJSONString(key, to: &json)
                json.append(UInt8(ascii: ":"))
                Self.appendJSONString(metadata[key]!, to: &json)
            }
            json.append(UInt8(ascii: "}"))
            first = false
        }
        for tensor in tensors {
            let bytes = tensor.elementCount * 4
            if !first { json.append(UInt8(ascii: ",")) }
            first = false
            Self.appendJSONString(tensor.name, to: &json)
            json += Array(
                #":{"dtype":"\#(tensor.dtype.rawValue)","shape":[\#(tensor.shape.map(String.init).joined(separator: ","))],"data_offsets":[\#(offset),\#(offset + bytes)]}"#
                    .utf8)
            offset += bytes
        }
        json.append(UInt8(ascii: "}"))
        while json.count % 8 != 0 { json.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + json.count)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out += json
        return out
    }

    /// Calls `body` with the header, then each tensor's little-endian data, in file order; stops at the first error.
    private func withParts<Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Void) throws(Failure) {
        var failure: Failure? = nil
        func feed(_ bytes: UnsafeRawBufferPointer) {
            guard failure == nil else { return }
            do throws(Failure) { try body(bytes) } catch { failure = error }
        }
        header().withUnsafeBytes(feed)
        for tensor in tensors {
            #if _endian(little)
                if tensor.dtype == .f32 {
                    tensor.values.withUnsafeBytes(feed)
                } else {
                    tensor.integers.withUnsafeBytes(feed)
                }
            #else
                var swapped: [UInt8] = []
                swapped.reserveCapacity(tensor.elementCount * 4)
                for value in tensor.values {
                    withUnsafeBytes(of: value.bitPattern.littleEndian) { swapped.append(contentsOf: $0) }
                }
                for value in tensor.integers {
                    withUnsafeBytes(of: value.littleEndian) { swapped.append(contentsOf: $0) }
                }
                swapped.withUnsafeBytes(feed)
            #endif
        }
        if let failure { throw failure }
    }

    /// The file bytes.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(8 + 256 + tensors.reduce(0) { $0 + $1.elementCount * 4 })
        withParts { bytes in out.append(contentsOf: bytes) }
        return out
    }

    /// Writes atomically: a temporary file in the same directory (mode 0644), written straight from the tensors'
    /// storage, then `rename`. A failure removes the temporary file and leaves any file at `path` untouched.
    /// Atomic against a killed process, not against a power loss (nothing is fsync'd: the coordinator writes a
    /// checkpoint every round). `requireFinite` refuses (`.nonFinite`, naming the tensor) to write a NaN or an
    /// infinity that `read(from:requireFinite:)` would refuse to read back.
    ///
    /// `recycling`, when given, names a spare file in the same directory (an obsolete file of the same kind) to
    /// overwrite in place and rename to `path` instead of creating a new one: rewriting already allocated pages
    /// costs the file system far less than allocating a new file and freeing an old one every time (the
    /// coordinator checkpoints every round). The spare is consumed; a missing spare falls back to a new file. A
    /// failure leaves `path` untouched and the spare, if any, with unspecified content (it is obsolete anyway).
    public func write(to path: String, recycling spare: String? = nil, requireFinite: Bool = false)
        throws(TensorFileError)
    {
        if requireFinite {
            for tensor in tensors where tensor.dtype == .f32 && !FastMath.allFinite(tensor.values) {
                if let bad = tensor.values.firstIndex(where: { !$0.isFinite }) {
                    throw TensorFileError(
                        code: .nonFinite, file: path,
                        message: "tensor '\(tensor.name)' holds a non-finite value at element \(bad); not written")
                }
            }
        }
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let name = path.contains("/") ? String(path[path.index(after: path.lastIndex(of: "/")!)...]) : path
        var temporary = directory + "/.\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var descriptor: Int32 = -1
        if let spare {
            descriptor = open(spare, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)
            if descriptor >= 0 { temporary = spare }
        }
        if descriptor < 0 {
            descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        }
        guard descriptor >= 0 else {
            throw TensorFileError(code: .io, file: path, message: "cannot create a temporary file (errno \(errno))")
        }
        var total = 0
        do throws(TensorFileError) {
            try withParts { (bytes) throws(TensorFileError) in
                var written = 0
                while written < bytes.count {
                    let result = Foundation.write(descriptor, bytes.baseAddress! + written, bytes.count - written)
                    if result < 0 {
                        if errno == EINTR { continue }
                        throw TensorFileError(
                            code: .io, file: path, message: "cannot write temporary file (errno \(errno))")
                    }
                    written += result
                }
                total += written
            }
            // A recycled spare may be longer than this file: cut its tail.
            guard ftruncate(descriptor, off_t(total)) == 0 else {
                throw TensorFileError(code: .io, file: path, message: "cannot size temporary file (errno \(errno))")
            }
        } catch {
            close(descriptor)
            unlink(temporary)
            throw error
        }
        guard close(descriptor) == 0 else {
            let code = errno
            unlink(temporary)
            throw TensorFileError(code: .io, file: path, message: "cannot write temporary file (errno \(code))")
        }
        if rename(temporary, path) != 0 {
            let code = errno
            unlink(temporary)
            throw TensorFileError(
                code: .io, file: path, message: "cannot rename temporary file into place (errno \(code))")
        }
    }

    // MARK: Decoding

    /// Reads and validates a file (see `init(bytes:file:requireFinite:)`).
    public static func read(from path: String, requireFinite: Bool = false) throws(TensorFileError) -> SafeTensors {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw TensorFileError(code: .io, file: path, message: String(cString: strerror(errno)))
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            let kind = status.st_mode & S_IFMT == S_IFDIR ? "a folder" : "a device, socket or pipe"
            throw TensorFileError(code: .io, file: path, message: "is \(kind), not a tensor file")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            // Foundation's text for errno (e.g. "Permission denied"), not its NSCocoaErrorDomain wording.
            let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
            let reason = underlying.map { String(cString: strerror(Int32($0.code))) } ?? error.localizedDescription
            throw TensorFileError(code: .io, file: path, message: "cannot read: \(reason)")
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
        guard bytes.count >= 8 else {
            throw fail(.truncated, "file is \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw fail(
                .truncated,
                "header length \(headerLength) exceeds the \(bytes.count - 8) bytes after it (truncated or corrupted)")
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
                guard let dictionary = value as? [String: Any] else {
                    throw fail(.corruptedHeader, "__metadata__ is not an object")
                }
                for (key, item) in dictionary {
                    guard let string = item as? String else {
                        throw fail(.corruptedHeader, "metadata '\(key)' is not a string")
                    }
                    metadata[key] = string
                }
                continue
            }
            guard let entry = value as? [String: Any] else {
                throw fail(.corruptedHeader, "entry '\(name)' is not an object")
            }
            guard let dtype = entry["dtype"] as? String else {
                throw fail(.corruptedHeader, "tensor '\(name)' has no dtype")
            }
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
                throw fail(
                    .badOffsets,
                    "tensor '\(entry.name)' data_offsets [\(entry.begin), \(entry.end)] are not contiguous (expected begin \(expectedBegin))"
                )
            }
            var elements = 1
            for dimension in entry.shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
                guard !overflow else { throw fail(.corruptedHeader, "tensor '\(entry.name)' shape overflows") }
                elements = product
            }
            let (byteCount, overflow) = elements.multipliedReportingOverflow(by: 4)
            guard (byteCount, overflow) == (entry.end - entry.begin, false) else {
                throw fail(
                    .badOffsets,
                    "tensor '\(entry.name)' shape \(entry.shape) needs \(overflow ? "more than Int.max" : "\(byteCount)") "
                        + "bytes, offsets give \(entry.end - entry.begin)"
                )
            }
            guard entry.end <= dataLength else {
                throw fail(
                    .truncated,
                    "tensor '\(entry.name)' ends at byte \(entry.end) of the data, which has only \(dataLength) bytes (truncated)"
                )
            }
            expectedBegin = entry.end
        }
        guard expectedBegin == dataLength else {
            throw fail(
                .badOffsets, "\(dataLength - expectedBegin) bytes after the last tensor are not covered by any tensor")
        }
        var tensors: [SafeTensor] = []
        tensors.reserveCapacity(entries.count)
        for entry in entries {
            let count = (entry.end - entry.begin) / 4
            if entry.dtype == .i32 {
                var integers = [Int32](repeating: 0, count: count)
                bytes.withUnsafeBytes { raw in
                    integers.withUnsafeMutableBytes { target in
                        target.copyMemory(
                            from: UnsafeRawBufferPointer(
                                rebasing: raw[(dataStart + entry.begin)..<(dataStart + entry.end)]))
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
                    target.copyMemory(
                        from: UnsafeRawBufferPointer(rebasing: raw[(dataStart + entry.begin)..<(dataStart + entry.end)])
                    )
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

    /// Appends `string` as a JSON string literal: UTF-8 copied as is, except `"`, `\\` and control characters.
    static func appendJSONString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { utf8 in
            var runStart = 0
            for index in utf8.indices {
                let byte = utf8[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                out.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(byte)
                case UInt8(ascii: "\n"): out.append(UInt8(ascii: "n"))
                case UInt8(ascii: "\r"): out.append(UInt8(ascii: "r"))
                case UInt8(ascii: "\t"): out.append(UInt8(ascii: "t"))
                default:
                    func hexDigit(_ value: UInt8) -> UInt8 {
                        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
                    }
                    out.append(UInt8(ascii: "u"))
                    out.append(UInt8(ascii: "0"))
                    out.append(UInt8(ascii: "0"))
                    out.append(hexDigit(byte >> 4))
                    out.append(hexDigit(byte & 15))
                }
                runStart = index + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
    }
}
