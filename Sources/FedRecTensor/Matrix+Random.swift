extension Matrix {
    /// Entries drawn i.i.d. from `normal(0, standardDeviation^2)`.
    public static func normal(rows: Int, columns: Int, standardDeviation: Float, using rng: inout SplitMix64) -> Matrix {
        precondition(standardDeviation >= 0, "standard deviation must be non-negative")
        var m = Matrix(rows: rows, columns: columns)
        for i in 0..<m.count { m.storage[i] = standardDeviation * rng.nextGaussian() }
        return m
    }

    /// Entries drawn i.i.d. from `uniform(-limit, limit)`.
    public static func uniform(rows: Int, columns: Int, limit: Float, using rng: inout SplitMix64) -> Matrix {
        var m = Matrix(rows: rows, columns: columns)
        for i in 0..<m.count { m.storage[i] = limit * (2 * rng.nextUnitFloat() - 1) }
        return m
    }

    /// Glorot/Xavier uniform for a `fanIn x fanOut` weight: limit `sqrt(6 / (fanIn + fanOut))`.
    public static func glorotUniform(fanIn: Int, fanOut: Int, using rng: inout SplitMix64) -> Matrix {
        let limit = fanIn + fanOut > 0 ? (6 / Float(fanIn + fanOut)).squareRoot() : 0
        return uniform(rows: fanIn, columns: fanOut, limit: limit, using: &rng)
    }

    /// He/Kaiming normal for a `fanIn x fanOut` weight feeding a ReLU: std `sqrt(2 / fanIn)`.
    public static func heNormal(fanIn: Int, fanOut: Int, using rng: inout SplitMix64) -> Matrix {
        normal(rows: fanIn, columns: fanOut, standardDeviation: fanIn > 0 ? (2 / Float(fanIn)).squareRoot() : 0, using: &rng)
    }
}

extension SplitMix64 {
    /// An independent generator for sub-stream `index` (e.g. one per parameter), so adding a parameter
    /// does not shift the draws of the others.
    public static func stream(seed: UInt64, index: UInt64) -> SplitMix64 {
        var mixer = SplitMix64(seed: seed ^ (index &* 0xD1B5_4A32_D192_ED03))
        return SplitMix64(seed: mixer.next())
    }
}
