package redisbackend

import "testing"

func TestParseReplication(t *testing.T) {
	tests := []struct {
		name    string
		info    string
		want    Replication
		wantErr bool
	}{
		{"a lone primary", "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n", Replication{}, false},
		{"two replicas, one lagging", "role:master\r\nconnected_slaves:2\r\n" +
			"slave0:ip=10.0.0.2,port=6379,state=online,offset=100,lag=0\r\n" +
			"slave1:ip=10.0.0.3,port=6379,state=online,offset=40,lag=11\r\n", Replication{Replicas: 2, InSync: 1}, false},
		{"a replica still loading", "role:master\r\nconnected_slaves:1\r\n" +
			"slave0:ip=a,port=1,state=wait_bgsave,offset=0,lag=0\r\n", Replication{Replicas: 1}, false},
		{"a replica is not the primary", "role:slave\r\nmaster_host:x\r\n", Replication{}, true},
		{"garbage count", "role:master\r\nconnected_slaves:many\r\n", Replication{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseReplication(tt.info)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseReplication = %+v, %v; want %+v (error %t)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
