package controllers

import (
	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// FieldManager is the server-side apply field manager of every write the
// operator makes.
const FieldManager = "hubbub-operator"

// Labels and annotations the operator puts on what it creates.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"

	// AppName is the app.kubernetes.io/name of chat and Redis objects.
	AppName = "hubbub"
	// ManagedBy is the app.kubernetes.io/managed-by value of every owned
	// object; the operator's caches select on it.
	ManagedBy = "hubbub-operator"

	// ComponentChat and ComponentRedis are the app.kubernetes.io/component values.
	ComponentChat  = "chat"
	ComponentRedis = "redis"

	// ConfigHashAnnotation on the chat pod template holds a hash of the
	// rendered configuration, so a change rolls the pods.
	ConfigHashAnnotation = "chat.hubbub.dev/config-hash"
	// PasswordGenerationAnnotation on the managed Redis and chat pod
	// templates names the generation of the managed Redis password: a random
	// value the operator picks whenever it creates the password Secret, so
	// that every pod started with an older password is replaced. It also
	// tells a pod that cannot find the Secret now from one that could not
	// before the last creation. The key predates generations (it held a hash
	// of the Secret); keeping it spares every managed Redis a restart when
	// the operator is upgraded.
	PasswordGenerationAnnotation = "chat.hubbub.dev/password-hash"
)

// selectorLabels select one component's pods of one room. They are immutable
// once a Deployment or StatefulSet exists, so they never change.
func selectorLabels(room *chatv1alpha1.ChatRoom, component string) map[string]string {
	return map[string]string{
		LabelName:      AppName,
		LabelInstance:  room.Name,
		LabelComponent: component,
	}
}

// objectLabels go on every owned object and pod template: the selector labels
// plus managed-by, which the operator's caches filter on.
func objectLabels(room *chatv1alpha1.ChatRoom, component string) map[string]string {
	l := selectorLabels(room, component)
	l[LabelManagedBy] = ManagedBy
	return l
}
