/// Fast, allocation-light scanning of delimited text files held as bytes.
///
/// Lines end at LF (a trailing CR is dropped); lines that hold only whitespace are skipped but still
/// counted, so reported line numbers are 1-based physical lines. With `quoting` on (CSV), a field may
/// be wrapped in double quotes and contain the delimiter and doubled quotes (`""`); quoted fields
/// cannot span lines.
struct ByteTable {
    /// The file's name as shown in errors.
    let name: String
    let bytes: [UInt8]
    let delimiter: UInt8
    let quoting: Bool

    /// The delimiter as messages name it ("tab", "comma" or "'|'").
    var delimiterName: String { delimiter == 0x09 ? "tab" : delimiter == 0x2C ? "comma" : "'|'" }

    /// Calls `body` for every non-blank line with its fields split; `body` may throw to stop.
    func forEachRow(_ body: (inout Row) throws -> Void) throws {
        try bytes.withUnsafeBufferPointer { buffer in
            var row = Row(buffer: buffer, table: self)
            let end = buffer.count
            var start = 0
            var line = 0
            while start < end {
                line += 1
                var stop = start
                while stop < end && buffer[stop] != 0x0A { stop += 1 }
                let next = stop + 1
                if stop > start && buffer[stop - 1] == 0x0D { stop -= 1 }
                var blank = true
                var k = start
                while k < stop {
                    if !Row.isSpace(buffer[k]) {
                        blank = false
                        break
                    }
                    k += 1
                }
                if !blank {
                    row.line = line
                    row.split(start, stop)
                    try body(&row)
                }
                start = next
            }
        }
    }

    /// One line, split into fields. Valid only inside `forEachRow`'s closure.
    struct Row {
        /// A field's raw bytes (`start..<end`, including quotes) and whether it was quoted.
        struct Span {
            var start: Int
            var end: Int
            var quoted: Bool
        }

        let buffer: UnsafeBufferPointer<UInt8>
        let table: ByteTable
        var line = 0
        var spans: [Span] = []
        var lineStart = 0
        var lineEnd = 0
        /// The index of a malformed quoted field, if any: an unterminated quote, or text after the closing quote
        /// (`textAfterQuote`).
        var malformedField: Int?
        /// Whether `malformedField` has text after its closing quote (else its quote is unterminated).
        var textAfterQuote = false

        init(buffer: UnsafeBufferPointer<UInt8>, table: ByteTable) {
            self.buffer = buffer
            self.table = table
            spans.reserveCapacity(32)
        }

        @inline(__always) static func isSpace(_ byte: UInt8) -> Bool {
            byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0B || byte == 0x0C
        }

        var count: Int { spans.count }

        mutating func split(_ start: Int, _ end: Int) {
            malformedField = nil
            textAfterQuote = false
            lineStart = start
            lineEnd = end
            spans.removeAll(keepingCapacity: true)
            let delimiter = table.delimiter
            var fieldStart = start
            var k = start
            if !table.quoting {
                while k < end {
                    if buffer[k] == delimiter {
                        spans.append(Span(start: fieldStart, end: k, quoted: false))
                        fieldStart = k + 1
                    }
                    k += 1
                }
                spans.append(Span(start: fieldStart, end: end, quoted: false))
                return
            }
            while true {
                // Skip leading spaces to see whether the field is quoted.
                var q = fieldStart
                while q < end && buffer[q] == 0x20 { q += 1 }
                if q < end && buffer[q] == 0x22 {
                    var p = q + 1
                    while true {
                        if p >= end {
                            malformedField = spans.count
                            spans.append(Span(start: fieldStart, end: end, quoted: false))
                            return
                        }
                        if buffer[p] == 0x22 {
                            if p + 1 < end && buffer[p + 1] == 0x22 {
                                p += 2
                                continue
                            }
                            break
                        }
                        p += 1
                    }
                    // p is the closing quote; the field runs to the next delimiter, with nothing but spaces after
                    // the quote (`"a"b` is malformed, not the literal `"a"b`).
                    var r = p + 1
                    while r < end && buffer[r] != delimiter {
                        if !Row.isSpace(buffer[r]) && malformedField == nil {
                            malformedField = spans.count
                            textAfterQuote = true
                        }
                        r += 1
                    }
                    spans.append(Span(start: fieldStart, end: r, quoted: true))
                    if r >= end { return }
                    fieldStart = r + 1
                } else {
                    var r = fieldStart
                    while r < end && buffer[r] != delimiter { r += 1 }
                    spans.append(Span(start: fieldStart, end: r, quoted: false))
                    if r >= end { return }
                    fieldStart = r + 1
                }
            }
        }

        /// The index of `buffer[start..<end]`'s id in `interner` (trimmed and unquoted).
        @inline(__always) func intern(_ index: Int, into interner: inout IDInterner) -> Int32 {
            let (s, e) = trimmed(index)
            if spans[index].quoted {
                return interner.intern(string(index))
            }
            return interner.intern(buffer, s, e)
        }

        /// Why the field cannot be an id, or nil: its bytes must be valid UTF-8 (ASCII is checked without
        /// decoding) without ASCII control characters other than tab (a NUL, an escape, DEL), which no id means
        /// to hold and which would be hard to type or see wherever the id is shown or given. A tab inside a quoted
        /// field is kept (the data-set files escape it).
        @inline(__always) func idProblem(_ index: Int) -> String? {
            let (s, e) = trimmed(index)
            var r = s
            var nonASCII = false
            while r < e {
                let byte = buffer[r]
                if (byte < 0x20 && byte != 0x09) || byte == 0x7F {
                    return "the id holds a control character (byte 0x\(String(byte, radix: 16, uppercase: true)))"
                }
                if byte >= 0x80 { nonASCII = true }
                r += 1
            }
            if nonASCII, String(validating: UnsafeBufferPointer(rebasing: buffer[s..<e]), as: UTF8.self) == nil {
                return "the id is not valid UTF-8 (convert the file to UTF-8, e.g. with iconv)"
            }
            return nil
        }

        /// The field's bytes with surrounding whitespace removed, and for a quoted field its quotes and the
        /// whitespace inside them too (`" u1 "` is the id `u1`, as the data-set files, which do not quote, read it
        /// back). For a quoted field the inner bytes still hold doubled quotes; use `string(_:)` for text.
        @inline(__always) func trimmed(_ index: Int) -> (start: Int, end: Int) {
            let span = spans[index]
            var s = span.start
            var e = span.end
            while s < e && Row.isSpace(buffer[s]) { s += 1 }
            while e > s && Row.isSpace(buffer[e - 1]) { e -= 1 }
            if span.quoted && e - s >= 2 && buffer[s] == 0x22 && buffer[e - 1] == 0x22 {
                s += 1
                e -= 1
                while s < e && Row.isSpace(buffer[s]) { s += 1 }
                while e > s && Row.isSpace(buffer[e - 1]) { e -= 1 }
            }
            return (s, e)
        }

        /// True when the trimmed field holds no bytes.
        func isEmpty(_ index: Int) -> Bool {
            let (s, e) = trimmed(index)
            return s == e
        }

        /// The field as text: trimmed, unquoted, `""` unescaped, decoded as UTF-8 (or Latin-1).
        func string(_ index: Int, latin1: Bool = false) -> String {
            let (s, e) = trimmed(index)
            let slice = UnsafeBufferPointer(rebasing: buffer[s..<e])
            if latin1 {
                var text = ""
                text.unicodeScalars.append(contentsOf: slice.map { Unicode.Scalar($0) })
                return spans[index].quoted ? text.replacingDoubledQuotes() : text
            }
            let text = String(decoding: slice, as: UTF8.self)
            return spans[index].quoted ? text.replacingDoubledQuotes() : text
        }

        /// The untrimmed raw text of the whole line (for messages).
        var rawLine: String {
            String(decoding: UnsafeBufferPointer(rebasing: buffer[lineStart..<lineEnd]), as: UTF8.self)
        }

        /// The field parsed as a decimal integer (optional sign), or nil.
        func int64(_ index: Int) -> Int64? {
            let (s, e) = trimmed(index)
            return ByteTable.parseInt64(buffer, s, e)
        }

        /// The field parsed as a decimal number (sign, digits, fraction, exponent), or nil.
        func double(_ index: Int) -> Double? {
            let (s, e) = trimmed(index)
            return ByteTable.parseDouble(buffer, s, e)
        }
    }

    static func parseInt64(_ buffer: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Int64? {
        var k = start
        var negative = false
        if k < end && (buffer[k] == 0x2D || buffer[k] == 0x2B) {
            negative = buffer[k] == 0x2D
            k += 1
        }
        guard k < end else { return nil }
        var value: Int64 = 0
        while k < end {
            let digit = buffer[k] &- 0x30
            guard digit < 10 else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(digit))
            guard !o1 && !o2 else { return nil }
            value = a
            k += 1
        }
        return negative ? -value : value
    }

    static func parseDouble(_ buffer: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Double? {
        var k = start
        var negative = false
        if k < end && (buffer[k] == 0x2D || buffer[k] == 0x2B) {
            negative = buffer[k] == 0x2D
            k += 1
        }
        var mantissa: Double = 0
        var digits = 0
        var exponent = 0
        while k < end, case let d = buffer[k] &- 0x30, d < 10 {
            mantissa = mantissa * 10 + Double(d)
            digits += 1
            k += 1
        }
        if k < end && buffer[k] == 0x2E {
            k += 1
            while k < end, case let d = buffer[k] &- 0x30, d < 10 {
                mantissa = mantissa * 10 + Double(d)
                exponent -= 1
                digits += 1
                k += 1
            }
        }
        guard digits > 0 else { return nil }
        if k < end && (buffer[k] == 0x65 || buffer[k] == 0x45) {
            k += 1
            var expNegative = false
            if k < end && (buffer[k] == 0x2D || buffer[k] == 0x2B) {
                expNegative = buffer[k] == 0x2D
                k += 1
            }
            var e = 0
            var expDigits = 0
            while k < end, case let d = buffer[k] &- 0x30, d < 10 {
                if e < 10_000 { e = e * 10 + Int(d) }
                expDigits += 1
                k += 1
            }
            guard expDigits > 0 else { return nil }
            exponent += expNegative ? -e : e
        }
        guard k == end else { return nil }
        var value = mantissa
        if exponent != 0 {
            var scale: Double = 1
            var p = 10.0
            var n = abs(exponent)
            while n > 0 {
                if n & 1 == 1 { scale *= p }
                p *= p
                n >>= 1
            }
            value = exponent < 0 ? value / scale : value * scale
        }
        guard value.isFinite else { return nil }
        return negative ? -value : value
    }
}

extension String {
    /// Replaces the CSV escape `""` by `"` (inside an already unquoted field).
    func replacingDoubledQuotes() -> String {
        guard utf8.contains(0x22) else { return self }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count)
        var previousWasQuote = false
        for byte in utf8 {
            if byte == 0x22 && previousWasQuote {
                previousWasQuote = false
                continue
            }
            previousWasQuote = byte == 0x22
            out.append(byte)
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// FNV-1a, 64-bit, over bytes: `fnv1a64([]) == 0xcbf29ce484222325`.
@inline(__always)
public func fnv1a64<Bytes: Sequence>(_ bytes: Bytes, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64
where Bytes.Element == UInt8 {
    var hash = seed
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01B3
    }
    return hash
}

/// FNV-1a, 64-bit, over the UTF-8 bytes of `text`.
public func fnv1a64(_ text: String) -> UInt64 {
    fnv1a64(text.utf8)
}

/// True when `a` sorts before `b` comparing UTF-8 bytes (not Swift's Unicode-aware `<`).
@inline(__always)
func byteLess(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}
