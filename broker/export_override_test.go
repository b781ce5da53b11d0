package broker

// CheckOverride is the validation of a raise, without storing anything, for the fuzz
// test.
func (o *Overrides) CheckOverride(in OverrideInput) (Override, error) { return o.check(in) }
