// Package controllers holds the ChatRoom reconciler: it turns a
// chat.hubbub.dev/v1alpha1 ChatRoom into the objects that run the room (chat
// Deployment, Service, ConfigMap, ServiceAccount, PodDisruptionBudget,
// HorizontalPodAutoscaler, Ingress and, for a managed Redis, its StatefulSet,
// Service, password Secret and NetworkPolicy) and reports what it sees in the
// ChatRoom's status.
//
// Desired objects are built by pure functions (chat_objects.go,
// redis_objects.go, chat_config.go) and written with server-side apply under
// one field manager, only when what the operator owns differs from what it
// wants (apply.go), so an unchanged room costs no writes. Status is computed
// by pure functions (status.go) and written only when it changed.
package controllers
