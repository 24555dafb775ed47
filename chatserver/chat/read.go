package chat

import (
	"context"
	"fmt"
)

// MarkAllRead moves the user's read markers on every public channel to its
// newest message. New accounts start here: history written before someone
// joined is there to scroll back through, not hundreds of "unread" messages.
func (s *Service) MarkAllRead(ctx context.Context, user string) error {
	for _, ch := range s.opts.Channels {
		last, err := s.b.LastID(ctx, ch)
		if err != nil {
			return fmt.Errorf("reading last id of %s: %w", ch, err)
		}
		if last == "" {
			continue
		}
		if err := s.b.SetRead(ctx, user, ch, last); err != nil {
			return fmt.Errorf("setting read marker on %s: %w", ch, err)
		}
	}
	return nil
}
