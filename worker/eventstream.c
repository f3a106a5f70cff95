/* placeholder: the AWS event-stream codec is being written */
typedef int bb_placeholder_eventstream;
