/*
 * crc32: CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320), as the AWS event-stream framing
 * needs for its prelude and message checksums. None of busbar's libraries exposes one.
 * Any process; pure function.
 */
#ifndef BB_CRC32_H
#define BB_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0. bb_crc32(0, "123456789", 9) == 0xCBF43926. */
uint32_t bb_crc32(uint32_t crc, const void *data, size_t len);

#endif
