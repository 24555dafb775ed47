package chat

import (
	"context"
	"errors"
	"fmt"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// MaxSearchBytes bounds a search's text.
const MaxSearchBytes = 256

// Searcher finds messages by their words in channels' kept history.
type Searcher interface {
	Search(ctx context.Context, q SearchQuery) (SearchPage, error)
}

// SearchQuery is one page of a search.
type SearchQuery struct {
	// Text is the words every result contains.
	Text string
	// Channels are the channels searched, each with its newest id when the
	// search began (what the results are at least as current as).
	Channels map[string]string
	// Before is the cursor of the page ("" = the newest results).
	Before string
	Limit  int
}

// SearchPage is what a search found, newest first; Next is the cursor of
// the next (older) page, "" when there is none.
type SearchPage struct {
	Messages []protocol.Message
	Next     string
}

// ErrNoSearch says this server cannot search: it has no index, or could
// not make one.
var ErrNoSearch = errors.New("search is not available on this server")

// Search searches channel, or with channel "" every channel user is in,
// for messages containing every word of text. Only channels user may read
// are searched.
func (s *Service) Search(ctx context.Context, user, channel, text, before string, limit int) (SearchPage, error) {
	if s.opts.Search == nil {
		return SearchPage{}, ErrNoSearch
	}
	q := SearchQuery{Text: text, Before: before, Limit: max(1, min(limit, MaxHistoryPage))}
	if channel != "" {
		if err := s.mayRead(ctx, user, channel); err != nil {
			return SearchPage{}, err
		}
		last, err := s.b.LastID(ctx, channel)
		if err != nil {
			return SearchPage{}, fmt.Errorf("reading %s's last id: %w", channel, err)
		}
		q.Channels = map[string]string{channel: last}
	} else {
		sn, err := s.snapshot(ctx, user)
		if err != nil {
			return SearchPage{}, err
		}
		q.Channels = make(map[string]string, len(sn.LastIDs))
		for _, c := range s.channelInfos(sn) {
			q.Channels[c.Name] = c.LastID
		}
	}
	page, err := s.opts.Search.Search(ctx, q)
	if err != nil {
		return SearchPage{}, fmt.Errorf("searching %d channels: %w", len(q.Channels), err)
	}
	return page, nil
}
