package redisbackend

import (
	"context"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

// dmScanPage is how many DM channels the snapshot's first round trip asks
// SSCAN for: a person with more takes the DMs call's loop.
const dmScanPage = 1000

// Snapshot implements chat.Snapshotter in two round trips where the calls
// it stands for take six: the person's lists (their channels, a page of
// DMs, their read markers) in one pipeline, then every channel's last id
// and unread count in another. A reconnect storm is mostly this read, and a
// round trip costs a chat server two system calls and a wake-up.
func (b *Backend) Snapshot(ctx context.Context, user string, defaults []string, lim chat.SnapshotLimits) (chat.Snapshot, error) {
	pipe := b.client.Pipeline()
	created := pipe.HGetAll(ctx, keys.UserChannels(b.room, user))
	dms := pipe.SScan(ctx, keys.DMs(b.room, user), 0, "", dmScanPage)
	reads := pipe.HGetAll(ctx, keys.ReadMarkers(b.room, user))
	if _, err := pipe.Exec(ctx); err != nil {
		return chat.Snapshot{}, b.wrap("connect snapshot", err)
	}
	sn := chat.Snapshot{Reads: reads.Val()}
	if lim.Created > 0 {
		sn.Created = memberOfs(created.Val(), lim.Created)
	}
	page, cursor := dms.Val()
	switch {
	case lim.DMs <= 0:
	case cursor != 0 && len(page) < lim.DMs:
		var err error
		if sn.DMs, err = b.DMs(ctx, user, lim.DMs); err != nil {
			return chat.Snapshot{}, err
		}
	default:
		sn.DMs = sortedDMs(page, lim.DMs)
	}
	names := sn.Channels(defaults)
	after := make(map[string]string, len(names))
	for _, ch := range names {
		after[ch] = sn.Reads[ch]
	}
	var err error
	sn.LastIDs, sn.Unread, err = b.lastAndCounts(ctx, names, after, lim.Unread)
	if err != nil {
		return chat.Snapshot{}, err
	}
	return sn, nil
}
