int bb_worker_main_placeholder(void); int bb_worker_main_placeholder(void) { return 0; }
