import ArgumentParser
import FedRecFederation

/// Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021), for `simulate` and `coordinator`.
struct AdaptiveClippingOptions: ParsableArguments {
    @Flag(
        help: ArgumentHelp(
            "Differential privacy: adaptive clipping (Andrew et al. 2021).",
            discussion:
                "The clip norm starts at --clip-norm and moves each round towards the --clip-quantile of the "
                + "clients' update norms, from a noised count of the clients that were not clipped. The update noise "
                + "multiplier becomes z_Delta = (z^-2 - (2 sigma_b)^-2)^-1/2, so both queries together cost what "
                + "--noise-multiplier alone costs."))
    var adaptiveClipping = false

    @Option(parsing: .unconditional, help: "Adaptive clipping: target fraction of clients whose update is not clipped.")
    var clipQuantile: Double = 0.5

    @Option(parsing: .unconditional, help: "Adaptive clipping: learning rate of the clip norm's geometric update.")
    var clipLR: Double = 0.2

    @Option(
        parsing: .unconditional,
        help: "Adaptive clipping: noise sigma_b on the count of unclipped clients (default: expected cohort / 20).")
    var countNoise: Double?

    func validate() throws {
        guard (0...1).contains(clipQuantile) else {
            throw ValidationError("--clip-quantile must lie in [0, 1], got \(clipQuantile)")
        }
        guard clipLR > 0, clipLR.isFinite else { throw ValidationError("--clip-lr must be positive, got \(clipLR)") }
        if let countNoise, !(countNoise > 0 && countNoise.isFinite) {
            throw ValidationError("--count-noise must be positive, got \(countNoise)")
        }
    }

    /// `privacy` with these options when `--adaptive-clipping` is on (checked: sigma_b must exceed z / 2).
    func applied(to privacy: DifferentialPrivacyConfiguration, population: Int) throws
        -> DifferentialPrivacyConfiguration
    {
        guard adaptiveClipping else { return privacy }
        var adapted = privacy
        adapted.adaptiveClipping = .init(
            targetQuantile: clipQuantile, learningRate: clipLR,
            countNoiseStandardDeviation: countNoise ?? privacy.samplingRate * Double(population) / 20)
        do { try adapted.validate() } catch let error as PrivacyError {
            let option = [
                "adaptiveClipping.targetQuantile": "--clip-quantile", "adaptiveClipping.learningRate": "--clip-lr",
                "adaptiveClipping.countNoiseStandardDeviation": "--count-noise",
            ][error.field ?? ""]
            guard let option else { throw error }
            throw ValidationError("\(option): \(error.message)")
        }
        return adapted
    }

    /// How the progress line describes the options of `privacy`.
    static func description(of privacy: DifferentialPrivacyConfiguration) -> String {
        privacy.adaptiveClipping.map {
            "adaptive clipping from \(privacy.clipNorm) towards quantile \($0.targetQuantile) (lr \($0.learningRate), "
                + "count noise \($0.countNoiseStandardDeviation)), update noise multiplier "
                + "\(privacy.updateNoiseMultiplier)"
        } ?? "clip norm \(privacy.clipNorm)"
    }
}
