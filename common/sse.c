/* placeholder: owned by a helper, replaced soon */
typedef int bb_placeholder_sse;
