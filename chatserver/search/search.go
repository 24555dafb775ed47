// Package search finds messages by their words in the kept history of
// channels: a bleve inverted index in the server's memory, kept current
// from the channels' streams.
//
// Every pod keeps its own index and catches a channel up from storage when
// someone searches it: what the search sees is what storage holds, on any
// pod, without a search module in Redis. A channel's first search on a pod
// reads and indexes its whole kept history; later ones read only the
// entries committed since. Edits replace a message's text in the index,
// deletes and trimming remove it.
package search

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/search/query"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Source is the channels' streams, as chat.Log has them.
type Source interface {
	// After returns up to limit entries (messages and changes) with ID >
	// after, oldest first; after "" = from the oldest kept.
	After(ctx context.Context, channel, after string, limit int) ([]protocol.Message, error)
}

// catchUpPage is how many entries one storage read brings when a channel
// is caught up.
const catchUpPage = 1000

// concurrent bounds the catch-ups running at once: a channel's first costs
// a read and indexing of its whole kept history.
const concurrent = 2

// catchUpTimeout bounds one catch-up, which outlives the search that
// started it: a channel's first is longer than a request may take.
const catchUpTimeout = 5 * time.Minute

// ErrIndexing says a searched channel is still being indexed when the
// search had to answer: it is still under way, and a search soon after
// finds it done. It wraps chat.ErrUnavailable.
var ErrIndexing = fmt.Errorf("%w: the search index is being built", chat.ErrUnavailable)

// Index is one server's search index over every channel searched here. It
// lives in a directory of its own under the system's temporary directory
// (TMPDIR), removed by Close.
type Index struct {
	src   Source
	slots chan struct{}

	opened  sync.Once
	openErr error
	idx     bleve.Index // set by open
	dir     string

	life context.Context
	end  context.CancelFunc
	runs sync.WaitGroup

	mu    sync.Mutex
	chans map[string]*channelState
}

// channelState is how far one channel is indexed.
type channelState struct {
	mu     sync.Mutex
	last   string      // the newest entry applied
	oldest string      // the oldest entry kept in storage, as last seen
	run    *catchUpRun // the catch-up under way; nil when none is
}

// catchUpRun is one catch-up of a channel: err is how it ended, once done
// is closed.
type catchUpRun struct {
	done chan struct{}
	err  error
}

// Fields of an indexed message.
const (
	fChannel  = "channel"
	fKey      = "key" // the sort key and document id: see docKey
	fText     = "text"
	fFrom     = "from"
	fTS       = "ts"
	fThread   = "thread"
	fEditedAt = "editedAt"
)

var storedFields = []string{fChannel, fKey, fText, fFrom, fTS, fThread, fEditedAt}

// New returns an empty index over src. The index is made on the first
// search: a server nobody searches holds no directory and no goroutines.
func New(src Source) *Index {
	x := &Index{src: src, slots: make(chan struct{}, concurrent), chans: map[string]*channelState{}}
	x.life, x.end = context.WithCancel(context.Background())
	return x
}

// open makes the index once; every search after a failure reports it.
func (x *Index) open() error {
	x.opened.Do(func() {
		dir, err := os.MkdirTemp("", "hubbub-search-")
		if err != nil {
			x.openErr = fmt.Errorf("%w: no directory for its index (set TMPDIR to a writable one): %w", chat.ErrNoSearch, err)
			return
		}
		// The index is rebuilt from storage whenever a server starts: a
		// batch need not wait for its segment to reach the disk.
		idx, err := bleve.NewUsing(dir, indexMapping(), scorch.Name, scorch.Name, map[string]any{"unsafe_batch": true})
		if err != nil {
			x.openErr = errors.Join(fmt.Errorf("%w: creating its index: %w", chat.ErrNoSearch, err), os.RemoveAll(dir))
			return
		}
		x.idx, x.dir = idx, dir
	})
	if x.openErr == nil && x.idx == nil {
		return fmt.Errorf("%w: the index is closed", chat.ErrNoSearch) // Close came first
	}
	return x.openErr
}

// Close stops the catch-ups under way and removes the index.
func (x *Index) Close() error {
	x.end()
	x.opened.Do(func() {}) // no index is made after Close
	x.runs.Wait()
	if x.idx == nil {
		return nil
	}
	return errors.Join(x.idx.Close(), os.RemoveAll(x.dir))
}

// indexMapping: no field keeps doc values (they serve sorting by a field,
// and results sort by document id, which is the key).
func indexMapping() mapping.IndexMapping {
	keyword := func(index bool) *mapping.FieldMapping {
		f := bleve.NewKeywordFieldMapping()
		f.Store, f.Index, f.IncludeInAll, f.DocValues = true, index, false, false
		return f
	}
	stored := func() *mapping.FieldMapping {
		f := bleve.NewNumericFieldMapping()
		f.Store, f.Index, f.IncludeInAll, f.DocValues = true, false, false, false
		return f
	}
	text := bleve.NewTextFieldMapping()
	text.Store, text.IncludeInAll, text.DocValues = true, false, false
	text.IncludeTermVectors = false
	text.Analyzer = "standard"

	doc := bleve.NewDocumentStaticMapping()
	doc.AddFieldMappingsAt(fChannel, keyword(true))
	doc.AddFieldMappingsAt(fKey, keyword(true))
	doc.AddFieldMappingsAt(fText, text)
	doc.AddFieldMappingsAt(fFrom, keyword(false))
	doc.AddFieldMappingsAt(fThread, keyword(false))
	doc.AddFieldMappingsAt(fTS, stored())
	doc.AddFieldMappingsAt(fEditedAt, stored())
	m := bleve.NewIndexMapping()
	m.DefaultMapping = doc
	m.DefaultAnalyzer = "standard"
	m.StoreDynamic, m.IndexDynamic, m.DocValuesDynamic = false, false, false
	return m
}

// docKey orders messages newest first across channels when sorted
// descending, and names each message once: ids of different channels can
// be equal, so the channel breaks the tie.
func docKey(channel string, id protocol.ID) string {
	return fmt.Sprintf("%020d-%020d|%s", id.Ms, id.Seq, channel)
}

// ParseCursor checks a page cursor (a result's key, as Search returns it).
func ParseCursor(s string) error {
	ids, ch, ok := strings.Cut(s, "|")
	ms, seq, ok2 := strings.Cut(ids, "-")
	if !ok || !ok2 || len(ms) != 20 || len(seq) != 20 || !validChannel(ch) {
		return fmt.Errorf("%q is not a search cursor", protocol.Truncate(s, 40))
	}
	for _, p := range []string{ms, seq} {
		if _, err := strconv.ParseUint(p, 10, 64); err != nil {
			return fmt.Errorf("%q is not a search cursor", protocol.Truncate(s, 40))
		}
	}
	return nil
}

// Search returns up to q.Limit messages of q.Channels containing every word
// of q.Text, newest first, older than the cursor q.Before ("" = the newest),
// and the cursor of the next page ("" when there is none).
func (x *Index) Search(ctx context.Context, q chat.SearchQuery) (chat.SearchPage, error) {
	if err := x.open(); err != nil {
		return chat.SearchPage{}, err
	}
	if len(q.Channels) == 0 {
		return chat.SearchPage{}, nil
	}
	for ch, newest := range q.Channels {
		x.startCatchUp(ch, newest)
	}
	channels := make([]query.Query, 0, len(q.Channels))
	for ch, newest := range q.Channels {
		if err := x.caughtUp(ctx, ch, newest); err != nil {
			return chat.SearchPage{}, err
		}
		t := bleve.NewTermQuery(ch)
		t.SetField(fChannel)
		channels = append(channels, t)
	}
	words := bleve.NewMatchQuery(q.Text)
	words.SetField(fText)
	words.SetOperator(query.MatchQueryOperatorAnd)
	must := []query.Query{words, bleve.NewDisjunctionQuery(channels...)}
	if q.Before != "" {
		before := bleve.NewTermRangeInclusiveQuery("", q.Before, nil, new(false))
		before.SetField(fKey)
		must = append(must, before)
	}
	req := bleve.NewSearchRequestOptions(bleve.NewConjunctionQuery(must...), q.Limit, 0, false)
	req.SortBy([]string{"-_id"}) // the id is the key: newest first
	req.Score = "none"           // ordered by time, not relevance
	req.Fields = storedFields
	res, err := x.idx.SearchInContext(ctx, req)
	if err != nil {
		return chat.SearchPage{}, fmt.Errorf("searching: %w", err)
	}
	page := chat.SearchPage{Messages: make([]protocol.Message, 0, len(res.Hits))}
	for _, h := range res.Hits {
		page.Messages = append(page.Messages, message(h.ID, h.Fields))
	}
	if len(res.Hits) == q.Limit && res.Total > uint64(q.Limit) {
		page.Next = res.Hits[len(res.Hits)-1].ID
	}
	return page, nil
}

// message is the stored document fields as a message.
func message(key string, f map[string]any) protocol.Message {
	str := func(k string) string { s, _ := f[k].(string); return s }
	num := func(k string) int64 { n, _ := f[k].(float64); return int64(n) }
	ids, _, _ := strings.Cut(key, "|")
	ms, seq, _ := strings.Cut(ids, "-")
	a, _ := strconv.ParseUint(ms, 10, 64)
	b, _ := strconv.ParseUint(seq, 10, 64)
	return protocol.Message{
		ID: protocol.ID{Ms: a, Seq: b}.String(), Channel: str(fChannel), From: str(fFrom), Text: str(fText),
		TS: num(fTS), Thread: str(fThread), EditedAt: num(fEditedAt),
	}
}

func document(m protocol.Message) map[string]any {
	d := map[string]any{fChannel: m.Channel, fText: m.Text, fFrom: m.From, fTS: float64(m.TS)}
	if m.Thread != "" {
		d[fThread] = m.Thread
	}
	if m.EditedAt != 0 {
		d[fEditedAt] = float64(m.EditedAt)
	}
	return d
}

func (x *Index) state(channel string) *channelState {
	x.mu.Lock()
	defer x.mu.Unlock()
	st := x.chans[channel]
	if st == nil {
		st = &channelState{}
		x.chans[channel] = st
	}
	return st
}

// startCatchUp starts catching channel up unless it holds newest (its
// newest id when the search began) or a catch-up is under way.
func (x *Index) startCatchUp(channel, newest string) {
	st := x.state(channel)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.run == nil && !holds(st.last, newest) {
		x.startLocked(channel, st)
	}
}

// startLocked starts a catch-up of channel; the caller holds st.mu.
func (x *Index) startLocked(channel string, st *channelState) *catchUpRun {
	st.run = &catchUpRun{done: make(chan struct{})}
	x.runs.Add(1)
	go x.catchUp(channel, st, st.run)
	return st.run
}

// caughtUp waits until channel holds newest, starting a catch-up when none
// is under way: one under way may have begun before newest was committed.
// Two catch-ups that read to the stream's end since the search began are
// enough: if newest is still not applied, it is no longer in the stream
// (deleted or trimmed meanwhile).
func (x *Index) caughtUp(ctx context.Context, channel, newest string) error {
	st := x.state(channel)
	for rounds := 0; ; rounds++ {
		st.mu.Lock()
		if holds(st.last, newest) {
			st.mu.Unlock()
			return nil
		}
		r := st.run
		if r == nil {
			if rounds >= 2 {
				st.mu.Unlock()
				return nil
			}
			r = x.startLocked(channel, st)
		}
		st.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return fmt.Errorf("%w (%s)", ErrIndexing, channel)
		}
		if r.err != nil {
			return r.err
		}
	}
}

// holds reports whether an index that applied last holds newest.
func holds(last, newest string) bool {
	if newest == "" || last == newest {
		return true
	}
	l, err1 := protocol.ParseID(last)
	n, err2 := protocol.ParseID(newest)
	return err1 == nil && err2 == nil && l.Compare(n) >= 0
}

// catchUp applies to the index what channel's stream holds past what was
// applied, to its end, and drops what storage no longer keeps. What it
// applied stays applied if it fails midway: the next goes on from there.
func (x *Index) catchUp(channel string, st *channelState, r *catchUpRun) {
	defer x.runs.Done()
	err := func() error {
		ctx, cancel := context.WithTimeout(x.life, catchUpTimeout)
		defer cancel()
		select {
		case x.slots <- struct{}{}:
			defer func() { <-x.slots }()
		case <-ctx.Done():
			return ctx.Err()
		}
		st.mu.Lock()
		last := st.last
		st.mu.Unlock()
		for {
			entries, err := x.src.After(ctx, channel, last, catchUpPage)
			if err != nil {
				return fmt.Errorf("reading %s to search it: %w", channel, err)
			}
			if len(entries) == 0 {
				break
			}
			if err := x.apply(channel, entries); err != nil {
				return err
			}
			last = entries[len(entries)-1].ID
			st.mu.Lock()
			st.last = last
			st.mu.Unlock()
			if len(entries) < catchUpPage {
				break
			}
		}
		return x.dropTrimmed(ctx, channel, st)
	}()
	r.err = err
	st.mu.Lock()
	st.run = nil
	st.mu.Unlock()
	close(r.done)
}

// apply indexes one page of a channel's entries in one batch.
func (x *Index) apply(channel string, entries []protocol.Message) error {
	b := x.idx.NewBatch()
	pending := map[string]map[string]any{} // documents of this batch, by key
	for _, e := range entries {
		target := e.ID
		if e.Kind != "" {
			target = e.Target
		}
		id, err := protocol.ParseID(target)
		if err != nil {
			continue // not one of the store's ids: nothing it could name is indexed
		}
		key := docKey(channel, id)
		switch e.Kind {
		case "":
			e.Channel = channel
			d := document(e)
			d[fKey] = key
			pending[key] = d
		case protocol.KindEdit:
			d, err := x.stored(key, pending)
			if err != nil {
				return err
			}
			if d == nil {
				continue // trimmed, deleted, or never a message of this channel
			}
			d[fText], d[fEditedAt] = e.Text, float64(e.TS)
			pending[key] = d
		case protocol.KindDelete:
			delete(pending, key)
			b.Delete(key)
		}
	}
	for key, d := range pending {
		if err := b.Index(key, d); err != nil {
			return fmt.Errorf("indexing %s: %w", key, err)
		}
	}
	if err := x.idx.Batch(b); err != nil {
		return fmt.Errorf("indexing %s: %w", channel, err)
	}
	return nil
}

// stored is the document under key: pending in this batch, or indexed
// before; nil when there is none.
func (x *Index) stored(key string, pending map[string]map[string]any) (map[string]any, error) {
	if d, ok := pending[key]; ok {
		return d, nil
	}
	req := bleve.NewSearchRequestOptions(bleve.NewDocIDQuery([]string{key}), 1, 0, false)
	req.Fields = storedFields
	res, err := x.idx.Search(req)
	if err != nil {
		return nil, fmt.Errorf("reading %s from the index: %w", key, err)
	}
	if len(res.Hits) == 0 {
		return nil, nil
	}
	d := map[string]any{}
	for _, f := range storedFields {
		if v, ok := res.Hits[0].Fields[f]; ok {
			d[f] = v
		}
	}
	return d, nil
}

// dropTrimmed removes from the index the channel's messages older than
// its oldest kept entry: the search covers the kept history, no more.
func (x *Index) dropTrimmed(ctx context.Context, channel string, st *channelState) error {
	first, err := x.src.After(ctx, channel, "", 1)
	if err != nil {
		return fmt.Errorf("reading %s to search it: %w", channel, err)
	}
	st.mu.Lock()
	seen := st.oldest
	st.mu.Unlock()
	if len(first) == 0 || first[0].ID == seen {
		return nil
	}
	id, err := protocol.ParseID(first[0].ID)
	if err != nil {
		return nil
	}
	oldest := docKey(channel, id)
	for {
		ch := bleve.NewTermQuery(channel)
		ch.SetField(fChannel)
		older := bleve.NewTermRangeInclusiveQuery("", oldest, nil, new(false))
		older.SetField(fKey)
		res, err := x.idx.SearchInContext(ctx, bleve.NewSearchRequestOptions(bleve.NewConjunctionQuery(ch, older), catchUpPage, 0, false))
		if err != nil {
			return fmt.Errorf("finding %s's trimmed messages: %w", channel, err)
		}
		if len(res.Hits) == 0 {
			break
		}
		b := x.idx.NewBatch()
		for _, h := range res.Hits {
			b.Delete(h.ID)
		}
		if err := x.idx.Batch(b); err != nil {
			return fmt.Errorf("dropping %s's trimmed messages: %w", channel, err)
		}
	}
	st.mu.Lock()
	st.oldest = first[0].ID
	st.mu.Unlock()
	return nil
}

func validChannel(ch string) bool {
	_, _, dm := protocol.SplitDM(ch)
	return dm || protocol.ValidChannel(ch)
}
