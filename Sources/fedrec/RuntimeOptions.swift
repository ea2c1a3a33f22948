import ArgumentParser
import FedRecTensor

/// Options every compute-heavy command takes.
struct RuntimeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "BLAS threads for this process (many client processes share the cores).")
    var threads: Int = 1

    func validate() throws {
        guard threads >= 1 else {
            throw ValidationError("--threads must be at least 1, got \(threads)")
        }
    }

    /// Applies the options to the process (BLAS thread count).
    func apply() {
        BLAS.setThreadCount(threads)
    }
}
