extension Duration {
    /// The duration in seconds as a `Double` (attosecond resolution, rounded to the nearest `Double`).
    public var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
