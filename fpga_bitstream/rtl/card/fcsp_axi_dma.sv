// The card's DMA port towards host memory: an AXI4 master doing one 64-bit single-beat transfer at a time
// (ARLEN/AWLEN 0, INCR, full width), for the sequencer's descriptor fetches, program loads, domain and priority
// reads and result and completion writes. One outstanding transfer keeps the sequencer simple and the order of
// host-memory writes exactly the program order (a completion is written after the results it announces); a card
// that needs the bandwidth would burst, which changes no byte the host sees.
//
// Request: `req` for one cycle with `we`, `addr` (8-byte aligned), `wdata`, `wstrb`; `ack` one cycle later or more,
// with `rdata` (reads) and `err` (the response was SLVERR or DECERR: the address is not mapped). `idle` is high when
// no transfer is under way (the soft reset waits for it, so a reset never cuts an AXI handshake).
module fcsp_axi_dma (
    input  logic        clk,
    input  logic        rst,
    input  logic        req,
    input  logic        we,
    input  logic [63:0] addr,
    input  logic [63:0] wdata,
    input  logic [ 7:0] wstrb,
    output logic        ack,
    output logic        err,
    output logic [63:0] rdata,
    output logic        idle,

    output logic [63:0] m_axi_awaddr,
    output logic [ 7:0] m_axi_awlen,
    output logic [ 2:0] m_axi_awsize,
    output logic [ 1:0] m_axi_awburst,
    output logic [ 2:0] m_axi_awprot,
    output logic        m_axi_awvalid,
    input  logic        m_axi_awready,
    output logic [63:0] m_axi_wdata,
    output logic [ 7:0] m_axi_wstrb,
    output logic        m_axi_wlast,
    output logic        m_axi_wvalid,
    input  logic        m_axi_wready,
    input  logic [ 1:0] m_axi_bresp,
    input  logic        m_axi_bvalid,
    output logic        m_axi_bready,
    output logic [63:0] m_axi_araddr,
    output logic [ 7:0] m_axi_arlen,
    output logic [ 2:0] m_axi_arsize,
    output logic [ 1:0] m_axi_arburst,
    output logic [ 2:0] m_axi_arprot,
    output logic        m_axi_arvalid,
    input  logic        m_axi_arready,
    input  logic [63:0] m_axi_rdata,
    input  logic [ 1:0] m_axi_rresp,
    input  logic        m_axi_rlast,
    input  logic        m_axi_rvalid,
    output logic        m_axi_rready
);
  typedef enum logic [2:0] {
    D_IDLE,
    D_AR,    // read address offered
    D_R,     // waiting for the read data
    D_AW,    // write address and data offered (either may be taken first)
    D_B      // waiting for the write response
  } dma_state_t;
  dma_state_t state;
  logic aw_done, w_done;

  assign m_axi_awlen = 8'd0;
  assign m_axi_awsize = 3'd3;  // 8 bytes
  assign m_axi_awburst = 2'b01;  // INCR
  assign m_axi_awprot = 3'b000;
  assign m_axi_wlast = 1'b1;
  assign m_axi_arlen = 8'd0;
  assign m_axi_arsize = 3'd3;
  assign m_axi_arburst = 2'b01;
  assign m_axi_arprot = 3'b000;
  assign m_axi_awvalid = state == D_AW && !aw_done;
  assign m_axi_wvalid = state == D_AW && !w_done;
  assign m_axi_bready = state == D_B;
  assign m_axi_arvalid = state == D_AR;
  assign m_axi_rready = state == D_R;
  assign idle = state == D_IDLE;
  // single beats: RLAST is always set, and OKAY/EXOKAY (bit 0) are both success
  /* verilator lint_off UNUSEDSIGNAL */
  wire unused = &{1'b0, m_axi_bresp[0], m_axi_rresp[0], m_axi_rlast};
  /* verilator lint_on UNUSEDSIGNAL */

  always_ff @(posedge clk) begin
    ack <= 1'b0;
    if (rst) begin
      state <= D_IDLE;
      aw_done <= 1'b0;
      w_done <= 1'b0;
      err <= 1'b0;
      rdata <= '0;
      m_axi_awaddr <= '0;
      m_axi_araddr <= '0;
      m_axi_wdata <= '0;
      m_axi_wstrb <= '0;
    end else begin
      case (state)
        D_IDLE:
        if (req) begin
          if (we) begin
            m_axi_awaddr <= addr;
            m_axi_wdata <= wdata;
            m_axi_wstrb <= wstrb;
            aw_done <= 1'b0;
            w_done <= 1'b0;
            state <= D_AW;
          end else begin
            m_axi_araddr <= addr;
            state <= D_AR;
          end
        end
        D_AR: if (m_axi_arready) state <= D_R;
        D_R:
        if (m_axi_rvalid) begin
          rdata <= m_axi_rdata;
          err <= m_axi_rresp[1];  // SLVERR or DECERR
          ack <= 1'b1;
          state <= D_IDLE;
        end
        D_AW: begin
          if (m_axi_awready) aw_done <= 1'b1;
          if (m_axi_wready) w_done <= 1'b1;
          if ((aw_done || m_axi_awready) && (w_done || m_axi_wready)) state <= D_B;
        end
        D_B:
        if (m_axi_bvalid) begin
          err <= m_axi_bresp[1];
          ack <= 1'b1;
          state <= D_IDLE;
        end
        default: state <= D_IDLE;
      endcase
    end
  end
endmodule
