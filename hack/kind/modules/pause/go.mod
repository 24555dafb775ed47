module github.com/hubbub-chat/hubbub/hack/kind/modules/pause

go 1.26.0
