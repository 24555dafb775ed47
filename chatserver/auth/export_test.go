package auth

// HoldBcryptSlotForTest takes one bcrypt slot until release is called.
func (s *Service) HoldBcryptSlotForTest() (release func()) {
	s.sem <- struct{}{}
	return func() { <-s.sem }
}
