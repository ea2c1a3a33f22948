import ArgumentParser

/// Range checks shared by the commands' `validate()`, so a number no run can use (infinite, astronomically
/// large, or too small to represent) is refused naming its option instead of trapping later in a conversion.
enum OptionChecks {
    /// The longest duration an option may give: about 115 days.
    static let maximumSeconds = 1e7

    /// A duration in seconds: finite, within `minimum...maximumSeconds` (`minimum` 0.001 unless zero is
    /// allowed), so `Duration.milliseconds(Int64(seconds * 1000))` is exact and cannot overflow.
    static func seconds(_ value: Double, _ option: String, allowZero: Bool = false) throws {
        let minimum = allowZero ? 0 : 0.001
        guard value.isFinite, value >= minimum, value <= maximumSeconds else {
            throw ValidationError(
                "\(option) must lie in \(allowZero ? "0" : "0.001")...\(Int(maximumSeconds)) seconds, got \(value)")
        }
    }

    /// A positive, finite number no larger than `maximum`.
    static func positive(_ value: Double, _ option: String, maximum: Double = 1e6) throws {
        guard value.isFinite, value > 0, value <= maximum else {
            throw ValidationError("\(option) must be a positive number up to \(maximum), got \(value)")
        }
    }

    /// A non-negative, finite number no larger than `maximum`.
    static func nonNegative(_ value: Double, _ option: String, maximum: Double = 1e6) throws {
        guard value.isFinite, value >= 0, value <= maximum else {
            throw ValidationError("\(option) must be a number in 0...\(maximum), got \(value)")
        }
    }

    /// The widest embedding the commands accept: far beyond recall models' 32-512, and small enough that a
    /// typo (`--dimension 100000000`) is refused instead of failing to allocate tens of gigabytes.
    static let maximumDimension = 4_096

    /// `--dimension`: 1...`maximumDimension`.
    static func dimension(_ value: Int) throws {
        guard (1...maximumDimension).contains(value) else {
            throw ValidationError("--dimension must lie in 1...\(maximumDimension), got \(value)")
        }
    }

    /// The levels `--log-level` takes.
    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    static func logLevel(_ value: String) throws {
        guard logLevels.contains(value) else {
            throw ValidationError("--log-level must be one of \(logLevels.joined(separator: ", ")), got '\(value)'")
        }
    }
}
