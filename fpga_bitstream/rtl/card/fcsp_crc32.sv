// CRC-32 (IEEE 802.3, zlib's crc32: reflected polynomial 0xEDB88320) over up to 8 bytes in one cycle, least
// significant byte first. The card seals every completion with it (docs/device.md: the CRC of bytes 0..27).
// This is the raw register update: start from 32'hFFFFFFFF and invert the last value, as zlib does.
module fcsp_crc32 (
    input  logic [31:0] crc_in,
    input  logic [63:0] data,
    input  logic [ 3:0] nbytes,  // 0..8: the low nbytes bytes of data are taken
    output logic [31:0] crc_out
);
  localparam logic [31:0] POLY = 32'hEDB88320;

  always_comb begin
    crc_out = crc_in;
    for (int i = 0; i < 8; i++) begin
      if (4'(i) < nbytes) begin
        crc_out = crc_out ^ {24'd0, data[i*8+:8]};
        for (int b = 0; b < 8; b++) crc_out = crc_out[0] ? (crc_out >> 1) ^ POLY : crc_out >> 1;
      end
    end
  end
endmodule
