#!/usr/bin/env bats
# Backpressure: a connection whose client stops reading its acks is not read
# further once max_output_buffer bytes of acks wait for it; reading resumes
# when the client reads again. A reload changes the bound.

load helpers/common
load helpers/backpressure

teardown() {
	sd_stop
}

@test "max_output_buffer: a client that stops reading is not read further; reading resumes when it reads" {
	sd_start 'workers = 1' 'max_output_buffer = 65536' 'read_buffer_size = 4096'
	stall_and_resume 65536
	run sd_metric submitd_connections_closed_total
	assert_output 1
}

@test "max_output_buffer changed by a reload: the new bound holds for new connections" {
	sd_start 'workers = 1' 'max_output_buffer = 262144' 'read_buffer_size = 4096'
	stall_and_resume 262144
	sed -i 's/^max_output_buffer = .*/max_output_buffer = 16384/' "$SD_CONF"
	kill -HUP "$SD_PID"
	wait_for sd_log_count "reload: configuration $SD_CONF applied"
	wait_for -t 15 sd_metric_is submitd_generations '' 1
	stall_and_resume 16384
}
