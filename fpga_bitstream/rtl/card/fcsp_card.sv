// The card's top level (docs/device.md, docs/rtl.md): BAR0 is the PeakRDL-generated register block
// (fpga_bitstream/generated/fpgacsp_regs.sv, AXI4-Lite), host memory is reached through an AXI4 master
// (fcsp_axi_dma), and one sequencer runs the jobs of the descriptor ring on one engine (fcsp_engine):
// fetch a 64-byte descriptor at JQ_HEAD, do it (NOP, LOAD, UNLOAD, RUN), write its 32-byte completion at CQ_TAIL
// sealed with a CRC-32 (fcsp_crc32) and the ring's phase bit, raise IRQ_STATUS.COMPLETION and signal MSI-X
// vector 0 (`irq_completion`, one cycle) unless it is masked. Device errors (a ring DMA error, a broken ring
// configuration, an internal fault) set ERROR, halt the card and signal vector 1 (`irq_error`).
//
// LOAD copies the program's canonical encoding into program memory and decodes it into the engine
// (fcsp_prog_decode): BAD_PROGRAM or OVER_CAPABILITY come from that decoder. Slots remember where their bytes lie;
// a RUN of a slot other than the engine's decodes it again first, so the engine always runs the bytes in program
// memory (which the host reads back through PROG_WIN_ADDR / PROG_WIN_DATA). A RUN reads each instance's domains
// (and priority rows) by DMA, runs the engine, writes the output domains and the 24-byte result record, and goes
// on to the next instance; its completion carries the sum of the engine's cycle counters (the cycle model).
//
// Soft reset (CTRL.SOFT_RESET) clears the rings' registers, ENABLE, IRQ_STATUS and IRQ_MASK through the fields'
// hwclr/hwset, every slot and the engine, waits for the DMA port to finish the transfer under way (an AXI handshake
// is never cut), and sets STATUS.READY; the performance counters, SCRATCH and HEARTBEAT keep counting. `rst` is the
// function-level reset (power-on). One clock domain: the register block, the DMA port and the engine share `clk`.
//
// The `inject_*` inputs are testbench hooks for the faults a card can have and a driver must survive (docs/device.md,
// "Faults"): sampled when a RUN job is dispatched (and its instance count equals `inject_items`, or that is 0), they
// make the job hang (nothing completes until a reset), halt the card with an INTERNAL error, or write its
// completion with one bit flipped after the CRC was computed; `fault_taken` pulses when one is taken.
module fcsp_card
  import fpgacsp_regs_pkg::*;
#(
    // the engine (fcsp_engine.sv; fpgacspd.rtl.params.EngineParams)
    parameter int NV = 10,
    parameter int DW = 8,
    parameter int NC = 8,
    parameter int LANES = 3,
    parameter int MS = 5,
    parameter int KINDS = 15,
    parameter int SD = NV,
    // the card
    parameter int SLOTS = 8,
    parameter int PM_KIB = 16,  // program memory
    parameter int MAX_INSTANCES = 65536,  // largest RUN job
    parameter int JQ_MAX_LOG2 = 10,
    parameter int CQ_MAX_LOG2 = 10,
    parameter int CLK_KHZ = 100000,  // the clock CAP_CLOCK reports, and HEARTBEAT's millisecond tick
    localparam int PBW = $clog2(PM_KIB * 1024),  // program memory byte address
    localparam int PM_WORDS = PM_KIB * 256,
    localparam int VW = NV > 1 ? $clog2(NV) : 1,
    localparam int SLW = SLOTS > 1 ? $clog2(SLOTS) : 1,
    localparam int RWORDS = 4 + 2 * MS + 2 * DW,
    localparam int RLOG = $clog2(RWORDS),
    localparam int AW = $clog2((NC + 1) << RLOG)
) (
    input  logic        clk,
    input  logic        rst,             // function-level reset: synchronous, active high
    // BAR0: AXI4-Lite slave
    output logic        s_axil_awready,
    input  logic        s_axil_awvalid,
    input  logic [ 8:0] s_axil_awaddr,
    input  logic [ 2:0] s_axil_awprot,
    output logic        s_axil_wready,
    input  logic        s_axil_wvalid,
    input  logic [31:0] s_axil_wdata,
    input  logic [ 3:0] s_axil_wstrb,
    input  logic        s_axil_bready,
    output logic        s_axil_bvalid,
    output logic [ 1:0] s_axil_bresp,
    output logic        s_axil_arready,
    input  logic        s_axil_arvalid,
    input  logic [ 8:0] s_axil_araddr,
    input  logic [ 2:0] s_axil_arprot,
    input  logic        s_axil_rready,
    output logic        s_axil_rvalid,
    output logic [31:0] s_axil_rdata,
    output logic [ 1:0] s_axil_rresp,
    // host memory: AXI4 master, 64-bit, one ID (transfers are in order)
    output logic [ 3:0] m_axi_awid,
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
    input  logic [ 3:0] m_axi_bid,
    input  logic [ 1:0] m_axi_bresp,
    input  logic        m_axi_bvalid,
    output logic        m_axi_bready,
    output logic [ 3:0] m_axi_arid,
    output logic [63:0] m_axi_araddr,
    output logic [ 7:0] m_axi_arlen,
    output logic [ 2:0] m_axi_arsize,
    output logic [ 1:0] m_axi_arburst,
    output logic [ 2:0] m_axi_arprot,
    output logic        m_axi_arvalid,
    input  logic        m_axi_arready,
    input  logic [ 3:0] m_axi_rid,
    input  logic [63:0] m_axi_rdata,
    input  logic [ 1:0] m_axi_rresp,
    input  logic        m_axi_rlast,
    input  logic        m_axi_rvalid,
    output logic        m_axi_rready,
    // MSI-X: one cycle per message
    output logic        irq_completion,  // vector 0
    output logic        irq_error,       // vector 1
    // testbench fault hooks (see above); tie to 0 on a card
    input  logic        inject_hang,
    input  logic        inject_error,
    input  logic        inject_corrupt,
    input  logic [31:0] inject_items,
    output logic        fault_taken
);
  localparam logic [7:0] OP_NOP = 8'd0, OP_LOAD = 8'd1, OP_UNLOAD = 8'd2, OP_RUN = 8'd3;
  localparam logic [15:0] OK = 16'd0, BAD_OPCODE = 16'd1, BAD_SLOT = 16'd2, BAD_PROGRAM = 16'd3;
  localparam logic [15:0] OVER_CAPABILITY = 16'd4, BAD_ADDRESS = 16'd5, ABORTED = 16'd6;
  localparam logic [7:0] ERR_INTERNAL = 8'd1, ERR_DMA = 8'd2, ERR_QUEUE_CONFIG = 8'd3;

  typedef enum logic [4:0] {
    S_RESET,      // soft or function reset: wait for the DMA port, then READY
    S_IDLE,
    S_FETCH,      // descriptor word k
    S_DISPATCH,
    S_LOAD_COPY,  // program byte i into program memory
    S_LOAD_DECODE,
    S_BIND,       // decode a slot's program into the engine before its RUN
    S_DOMAINS,    // instance q: domain word v
    S_PRIOS,      // instance q: priority byte a of variable v
    S_START,
    S_SOLVE,
    S_OUTPUT,     // instance q: output domain word v
    S_RECORD,     // instance q: result record word k
    S_FINISH,     // the completion: the queue check
    S_CRC,        // its CRC, one 8-byte word per cycle
    S_COMPLETE,   // its four words
    S_HANG        // an injected hang: nothing until a reset
  } seq_t;
  seq_t st;

  // ---- register block ------------------------------------------------------------------------------------
  fpgacsp_regs__in_t hwif_in;
  fpgacsp_regs__out_t hwif_out;
  fpgacsp_regs regs (
      .clk,
      .rst,
      .s_axil_awready,
      .s_axil_awvalid,
      .s_axil_awaddr,
      .s_axil_awprot,
      .s_axil_wready,
      .s_axil_wvalid,
      .s_axil_wdata,
      .s_axil_wstrb,
      .s_axil_bready,
      .s_axil_bvalid,
      .s_axil_bresp,
      .s_axil_arready,
      .s_axil_arvalid,
      .s_axil_araddr,
      .s_axil_arprot,
      .s_axil_rready,
      .s_axil_rvalid,
      .s_axil_rdata,
      .s_axil_rresp,
      .hwif_in,
      .hwif_out
  );

  logic ready, halted, clr;  // clr: the soft reset's one clearing cycle
  logic [7:0] err_code;
  logic [31:0] err_tag;
  logic [15:0] jq_head, cq_tail;
  logic [63:0] perf_cycles, perf_sweeps, perf_nodes;
  logic [31:0] perf_jobs, perf_instances, heartbeat, ms_count;
  logic set_completion, set_error;
  logic [63:0] eng_nodes;
  wire [63:0] nodes_live = perf_nodes + (st == S_SOLVE && !eng_start ? eng_nodes : 64'd0);  // moves while a search runs


  wire enable = hwif_out.CTRL.ENABLE.value;
  wire soft_reset = hwif_out.CTRL.SOFT_RESET.value;
  wire abort_pulse = hwif_out.CTRL.ABORT.value;
  wire [63:0] jq_base = {hwif_out.JQ_BASE_HI.ADDR.value, hwif_out.JQ_BASE_LO.ADDR.value};
  wire [63:0] cq_base = {hwif_out.CQ_BASE_HI.ADDR.value, hwif_out.CQ_BASE_LO.ADDR.value};
  wire [4:0] jq_log2 = hwif_out.JQ_SIZE.LOG2.value;
  wire [4:0] cq_log2 = hwif_out.CQ_SIZE.LOG2.value;
  wire [15:0] jq_tail = hwif_out.JQ_TAIL.INDEX.value;
  wire [15:0] cq_head = hwif_out.CQ_HEAD.INDEX.value;
  wire [16:0] jq_size = 17'd1 << jq_log2;
  wire [16:0] cq_size = 17'd1 << cq_log2;

  // ---- the running job's descriptor ----------------------------------------------------------------------
  logic [63:0] desc[8];
  wire [7:0] opcode = desc[0][7:0];
  wire [7:0] mode = desc[0][15:8];
  wire [15:0] slot = desc[0][31:16];
  wire [31:0] tag = desc[0][63:32];
  wire [31:0] items = desc[1][31:0];
  wire [31:0] flags = desc[1][63:32];
  wire [63:0] node_limit = desc[6];
  wire [63:0] max_solutions = desc[7];
  wire [SLW-1:0] slot_i = SLW'(slot);

  // ---- program memory ------------------------------------------------------------------------------------
  // 32-bit words, written a byte at a time by LOAD and a word at a time through the window; read combinationally
  // by the decoder (a byte) and the window (a word)
  logic [31:0] pmem[PM_WORDS];
  logic pm_we;
  logic [PBW-1:0] pm_waddr;
  logic [7:0] pm_wbyte;
  logic [PBW-1:0] dec_rd_addr;
  wire [31:0] dec_word = pmem[dec_rd_addr[PBW-1:2]];
  wire [7:0] dec_byte = dec_word[dec_rd_addr[1:0]*8+:8];
  wire [31:0] win_addr = hwif_out.PROG_WIN_ADDR.ADDR.value;
  wire win_inside = win_addr < 32'(PM_WORDS * 4);
  wire [31:0] win_word = win_inside ? pmem[win_addr[PBW-1:2]] : 32'hFFFF_FFFF;  // outside: all ones
  logic win_write;  // the window's DATA was written last cycle: store it at the address it had then
  logic [PBW-1:0] win_write_addr;

  always_ff @(posedge clk) begin
    win_write <= hwif_out.PROG_WIN_DATA.DATA.swmod && win_inside;
    win_write_addr <= win_addr[PBW-1:0];
    if (pm_we) pmem[pm_waddr[PBW-1:2]][pm_waddr[1:0]*8+:8] <= pm_wbyte;
    else if (win_write) pmem[win_write_addr[PBW-1:2]] <= hwif_out.PROG_WIN_DATA.DATA.value;
  end

  always_comb begin
    // every field of hwif_in is driven below (Verilator cannot assign '0 to an unpacked struct)
    hwif_in.CAP_VARS.MAX_VARS.next = 24'(NV);
    hwif_in.CAP_ENGINE.MAX_DOMAIN.next = 8'(DW);
    hwif_in.CAP_ENGINE.KINDS.next = 8'(KINDS);
    hwif_in.CAP_ENGINE.ENGINES.next = 8'd1;
    hwif_in.CAP_ENGINE.LANES.next = 8'(LANES);
    hwif_in.CAP_PROG.PROG_MEM_KIB.next = 24'(PM_KIB);
    hwif_in.CAP_PROG.SLOTS.next = 8'(SLOTS);
    hwif_in.CAP_QUEUE.JQ_MAX_LOG2.next = 5'(JQ_MAX_LOG2);
    hwif_in.CAP_QUEUE.CQ_MAX_LOG2.next = 5'(CQ_MAX_LOG2);
    hwif_in.CAP_JOB.MAX_INSTANCES.next = 32'(MAX_INSTANCES);
    hwif_in.CAP_CLOCK.CLK_KHZ.next = 32'(CLK_KHZ);
    hwif_in.STATUS.READY.next = ready;
    hwif_in.STATUS.BUSY.next = st != S_IDLE && st != S_RESET;
    hwif_in.STATUS.HALTED.next = halted;
    hwif_in.ERROR.CODE.next = err_code;
    hwif_in.ERROR_TAG.TAG.next = err_tag;
    hwif_in.IRQ_STATUS.COMPLETION.hwset = set_completion;
    hwif_in.IRQ_STATUS.ERROR.hwset = set_error;
    hwif_in.IRQ_STATUS.COMPLETION.hwclr = clr;
    hwif_in.IRQ_STATUS.ERROR.hwclr = clr;
    hwif_in.IRQ_MASK.COMPLETION.hwset = clr;
    hwif_in.IRQ_MASK.ERROR.hwset = clr;
    hwif_in.CTRL.ENABLE.hwclr = clr;
    hwif_in.JQ_BASE_LO.ADDR.hwclr = clr;
    hwif_in.JQ_BASE_HI.ADDR.hwclr = clr;
    hwif_in.JQ_SIZE.LOG2.hwclr = clr;
    hwif_in.JQ_TAIL.INDEX.hwclr = clr;
    hwif_in.CQ_BASE_LO.ADDR.hwclr = clr;
    hwif_in.CQ_BASE_HI.ADDR.hwclr = clr;
    hwif_in.CQ_SIZE.LOG2.hwclr = clr;
    hwif_in.CQ_HEAD.INDEX.hwclr = clr;
    hwif_in.JQ_HEAD.INDEX.next = jq_head;
    hwif_in.CQ_TAIL.INDEX.next = cq_tail;
    hwif_in.PERF_CYCLES_LO.COUNT.next = perf_cycles[31:0];
    hwif_in.PERF_CYCLES_HI.COUNT.next = perf_cycles[63:32];
    hwif_in.PERF_SWEEPS_LO.COUNT.next = perf_sweeps[31:0];
    hwif_in.PERF_SWEEPS_HI.COUNT.next = perf_sweeps[63:32];
    hwif_in.PERF_NODES_LO.COUNT.next = nodes_live[31:0];
    hwif_in.PERF_NODES_HI.COUNT.next = nodes_live[63:32];
    hwif_in.PERF_JOBS.COUNT.next = perf_jobs;
    hwif_in.PERF_INSTANCES.COUNT.next = perf_instances;
    hwif_in.HEARTBEAT.COUNT.next = heartbeat;
    // the program memory window: DATA follows the word at ADDR; every access of DATA advances ADDR by 4
    hwif_in.PROG_WIN_DATA.DATA.we = 1'b1;  // a software write wins (the block gives it priority)
    hwif_in.PROG_WIN_DATA.DATA.next = win_word;
    hwif_in.PROG_WIN_ADDR.ADDR.we = hwif_out.PROG_WIN_DATA.DATA.swacc;
    hwif_in.PROG_WIN_ADDR.ADDR.next = hwif_out.PROG_WIN_ADDR.ADDR.value + 32'd4;
  end

  // ---- DMA port, CRC, decoder, engine ----------------------------------------------------------------------
  logic dma_req, dma_we, dma_ack, dma_err, dma_idle;
  logic [63:0] dma_addr, dma_wdata, dma_rdata;
  fcsp_axi_dma dma (
      .clk,
      .rst,
      .req(dma_req),
      .we(dma_we),
      .addr(dma_addr),
      .wdata(dma_wdata),
      .wstrb(8'hFF),
      .ack(dma_ack),
      .err(dma_err),
      .rdata(dma_rdata),
      .idle(dma_idle),
      .*
  );

  logic [31:0] crc, crc_next;
  logic [63:0] crc_data;
  logic [3:0] crc_bytes;
  fcsp_crc32 crc32 (
      .crc_in(crc),
      .data(crc_data),
      .nbytes(crc_bytes),
      .crc_out(crc_next)
  );

  logic dec_start, dec_done, prog_we;
  logic [2:0] dec_code;
  logic [PBW-1:0] dec_base;
  logic [31:0] dec_len;
  logic [AW-1:0] prog_addr;
  logic [31:0] prog_wdata;
  fcsp_prog_decode #(
      .NV(NV),
      .DW(DW),
      .NC(NC),
      .MS(MS),
      .KINDS(KINDS),
      .PBW(PBW)
  ) decoder (
      .clk,
      .rst(rst || clr),
      .start(dec_start),
      .base(dec_base),
      .len(dec_len),
      .rd_addr(dec_rd_addr),
      .rd_byte(dec_byte),
      .prog_we,
      .prog_addr,
      .prog_wdata,
      .done(dec_done),
      .code(dec_code)
  );

  logic eng_start, eng_busy, eng_done, eng_aborted, dom_we, prio_we, abort_req;
  logic [VW-1:0] dom_addr, prio_addr, res_addr;
  logic [DW-1:0] dom_wdata, res_data;
  logic [DW*8-1:0] prio_row;
  logic [2:0] eng_status;
  logic [63:0] eng_solutions, eng_sweeps, eng_cycles;
  fcsp_engine #(
      .NV(NV),
      .DW(DW),
      .NC(NC),
      .LANES(LANES),
      .MS(MS),
      .KINDS(KINDS),
      .SD(SD)
  ) engine (
      .clk,
      .rst(rst || clr),
      .prog_we,
      .prog_addr,
      .prog_wdata,
      .dom_we,
      .dom_addr,
      .dom_wdata,
      .prio_we,
      .prio_addr,
      .prio_wdata(prio_row),
      .start(eng_start),
      .mode_solve(mode == 8'd2),
      .use_prio(flags[0]),
      .node_limit,
      .max_solutions,
      .abort_req,
      .busy(eng_busy),
      .done(eng_done),
      .status(eng_status),
      .aborted(eng_aborted),
      .nodes(eng_nodes),
      .solutions(eng_solutions),
      .sweeps(eng_sweeps),
      .cycles(eng_cycles),
      .res_addr,
      .res_data
  );

  // ---- the sequencer ---------------------------------------------------------------------------------------

  logic [SLOTS-1:0] slot_valid;
  logic [PBW-1:0] slot_base[SLOTS];
  logic [31:0] slot_len[SLOTS];
  logic [31:0] slot_vars[SLOTS];
  logic [7:0] slot_dom[SLOTS];
  logic eng_loaded;  // the engine holds the program of slot eng_slot
  logic [SLW-1:0] eng_slot;

  logic [3:0] k;  // word within a descriptor, record or completion
  logic [31:0] i, q, v, a;  // byte of a load; instance; variable; priority byte
  logic [31:0] n_vars;  // of the running RUN's program
  logic [7:0] d_size;
  logic [63:0] src_ptr, prio_ptr, dst_ptr, res_ptr;
  logic [63:0] beat_addr, beat;  // the last 8-byte word read for a byte stream (LOAD, priorities)
  logic beat_valid, waiting;  // waiting: a DMA transfer of this state is under way
  logic [63:0] job_cycles;
  logic [15:0] code;
  logic [31:0] done_items;
  logic [63:0] cw[4];  // the completion's words
  logic phase, corrupt, aborting;
  logic [31:0] seq;

  wire [63:0] byte_ptr = st == S_LOAD_COPY ? desc[2] + 64'(i) : prio_ptr;
  wire [63:0] byte_beat = {byte_ptr[63:3], 3'b000};
  wire have_beat = beat_valid && beat_addr == byte_beat;
  wire [7:0] stream_byte = beat[byte_ptr[2:0]*8+:8];
  wire fault_here = inject_items == 32'd0 || inject_items == items;
  wire [16:0] cq_next = (17'(cq_tail) + 17'd1) & (cq_size - 17'd1);

  assign dom_wdata = dma_rdata[DW-1:0];  // the word the last read returned, held by the DMA port
  assign res_addr = VW'(v);

  always_ff @(posedge clk) begin
    dma_req <= 1'b0;
    dec_start <= 1'b0;
    eng_start <= 1'b0;
    dom_we <= 1'b0;
    prio_we <= 1'b0;
    pm_we <= 1'b0;
    clr <= 1'b0;
    set_completion <= 1'b0;
    set_error <= 1'b0;
    irq_completion <= 1'b0;
    irq_error <= 1'b0;
    fault_taken <= 1'b0;
    // HEARTBEAT: a millisecond tick at CLK_KHZ, through every reset but the function-level one
    ms_count <= ms_count == 32'(CLK_KHZ - 1) ? 32'd0 : ms_count + 1;
    if (ms_count == 32'(CLK_KHZ - 1)) heartbeat <= heartbeat + 1;
    if (abort_pulse && (st == S_DOMAINS || st == S_PRIOS || st == S_START || st == S_SOLVE || st == S_OUTPUT
                        || st == S_RECORD || st == S_BIND)) begin
      aborting <= 1'b1;
      abort_req <= 1'b1;
    end
    if (rst) begin
      st <= S_RESET;
      clr <= 1'b1;
      ready <= 1'b0;
      perf_cycles <= '0;
      perf_sweeps <= '0;
      perf_nodes <= '0;
      perf_jobs <= '0;
      perf_instances <= '0;
      heartbeat <= '0;
      ms_count <= '0;
      halted <= 1'b0;
      err_code <= '0;
      err_tag <= '0;
      jq_head <= '0;
      cq_tail <= '0;
      slot_valid <= '0;
      eng_loaded <= 1'b0;
      seq <= '0;
      phase <= 1'b1;
      waiting <= 1'b0;
      aborting <= 1'b0;
      abort_req <= 1'b0;
    end else if (soft_reset) begin
      // the running job is abandoned: its completion is never written
      st <= S_RESET;
      clr <= 1'b1;
      ready <= 1'b0;
      halted <= 1'b0;
      err_code <= '0;
      err_tag <= '0;
      jq_head <= '0;
      cq_tail <= '0;
      slot_valid <= '0;
      eng_loaded <= 1'b0;
      seq <= '0;
      phase <= 1'b1;
      waiting <= 1'b0;
      aborting <= 1'b0;
      abort_req <= 1'b0;
    end else begin
      case (st)
        S_RESET:
        if (dma_idle && !dma_req && !clr) begin
          ready <= 1'b1;
          st <= S_IDLE;
        end

        S_IDLE:
        if (ready && enable && !halted && jq_head != jq_tail) begin
          if (32'(jq_log2) > JQ_MAX_LOG2 || 17'(jq_tail) >= jq_size) halt(ERR_QUEUE_CONFIG, 32'd0);
          else begin
            k <= '0;
            st <= S_FETCH;
          end
        end

        S_FETCH:
        if (!waiting) begin
          dma_read(jq_base + 64'({jq_head, 6'd0}) + 64'({k[2:0], 3'd0}));
        end else if (dma_ack) begin
          waiting <= 1'b0;
          if (dma_err) halt(ERR_DMA, 32'd0);
          else begin
            desc[k[2:0]] <= dma_rdata;
            k <= k + 1'b1;
            if (k == 4'd7) begin
              jq_head <= 16'((17'(jq_head) + 17'd1) & (jq_size - 17'd1));
              st <= S_DISPATCH;
            end
          end
        end

        S_DISPATCH: begin
          job_cycles <= '0;
          aborting <= 1'b0;
          abort_req <= 1'b0;
          corrupt <= 1'b0;
          beat_valid <= 1'b0;
          case (opcode)
            OP_NOP: finish(OK, 32'd0, 64'd1);
            OP_UNLOAD:
            if (32'(slot) < SLOTS && slot_valid[slot_i]) begin
              slot_valid[slot_i] <= 1'b0;
              if (eng_slot == slot_i) eng_loaded <= 1'b0;
              finish(OK, 32'd0, 64'd1);
            end else finish(BAD_SLOT, 32'd0, 64'd1);
            OP_LOAD:
            if (32'(slot) >= SLOTS) finish(BAD_SLOT, 32'd0, 64'd0);
            else if (desc[4][5:0] != 6'd0 || desc[4] + 64'(items) > 64'(PM_WORDS * 4))
              finish(BAD_ADDRESS, 32'd0, 64'd0);
            else begin
              i <= '0;
              eng_loaded <= 1'b0;  // the decoder is about to overwrite the engine's program
              st <= items == 0 ? S_LOAD_DECODE : S_LOAD_COPY;
              dec_start <= items == 0;
              dec_base <= PBW'(desc[4]);
              dec_len <= items;
            end
            OP_RUN:
            if (inject_hang && fault_here) begin
              fault_taken <= 1'b1;
              st <= S_HANG;
            end else if (inject_error && fault_here) begin
              fault_taken <= 1'b1;
              halt(ERR_INTERNAL, tag);
            end else if (32'(slot) >= SLOTS || !slot_valid[slot_i]) finish(BAD_SLOT, 32'd0, 64'd0);
            else if (items == 0 || items > MAX_INSTANCES || (mode != 8'd1 && mode != 8'd2)
                     || node_limit == 0 || max_solutions == 0)
              finish(OVER_CAPABILITY, 32'd0, 64'd0);
            else if (desc[2][2:0] != 0 || desc[4][2:0] != 0 || desc[5][2:0] != 0)
              finish(BAD_ADDRESS, 32'd0, 64'd0);  // the word streams are 8-byte aligned
            else begin
              if (inject_corrupt && fault_here) begin
                fault_taken <= 1'b1;
                corrupt <= 1'b1;
              end
              q <= '0;
              v <= '0;
              n_vars <= slot_vars[slot_i];
              d_size <= slot_dom[slot_i];
              src_ptr <= desc[2];
              prio_ptr <= desc[3];
              dst_ptr <= desc[4];
              res_ptr <= desc[5];
              if (eng_loaded && eng_slot == slot_i) st <= S_DOMAINS;
              else begin
                dec_base <= slot_base[slot_i];
                dec_len <= slot_len[slot_i];
                dec_start <= 1'b1;
                st <= S_BIND;
              end
            end
            default: finish(BAD_OPCODE, 32'd0, 64'd0);
          endcase
        end

        S_LOAD_COPY:
        if (!have_beat) begin
          if (!waiting) dma_read(byte_beat);
          else if (dma_ack) begin
            waiting <= 1'b0;
            if (dma_err) finish(BAD_ADDRESS, 32'd0, 64'd0);
            else begin
              beat <= dma_rdata;
              beat_addr <= byte_beat;
              beat_valid <= 1'b1;
            end
          end
        end else begin
          pm_we <= 1'b1;
          pm_waddr <= PBW'(desc[4] + 64'(i));
          pm_wbyte <= stream_byte;
          i <= i + 1;
          if (i + 1 == items) begin
            dec_start <= 1'b1;
            st <= S_LOAD_DECODE;
          end
        end

        S_LOAD_DECODE:
        if (dec_done) begin
          if (dec_code == 3'd0) begin
            slot_valid[slot_i] <= 1'b1;
            slot_base[slot_i] <= PBW'(desc[4]);
            slot_len[slot_i] <= items;
            slot_vars[slot_i] <= pmem_header_n;
            slot_dom[slot_i] <= pmem_header_d;
            eng_slot <= slot_i;
            eng_loaded <= 1'b1;
            finish(OK, 32'd0, (64'(items) + 64'd63) / 64'd64);  // one cycle per 64-byte beat of the load
          end else finish(16'(dec_code), 32'd0, 64'd0);
        end

        S_BIND:
        if (dec_done) begin
          if (dec_code != 3'd0) finish(BAD_PROGRAM, 32'd0, 64'd0);  // program memory changed under the slot
          else begin
            eng_slot <= slot_i;
            eng_loaded <= 1'b1;
            st <= S_DOMAINS;
          end
        end

        S_DOMAINS:
        if (aborting) finish(ABORTED, 32'd0, 64'd0);
        else if (!waiting) dma_read(src_ptr);
        else if (dma_ack) begin
          waiting <= 1'b0;
          if (dma_err) finish(BAD_ADDRESS, 32'd0, 64'd0);
          else begin
            dom_we <= 1'b1;
            dom_addr <= VW'(v);
            src_ptr <= src_ptr + 64'd8;
            if (v + 1 == n_vars) begin
              v <= '0;
              a <= '0;
              prio_row <= '0;
              st <= flags[0] ? S_PRIOS : S_START;
            end else v <= v + 1;
          end
        end

        S_PRIOS:
        if (!have_beat) begin
          if (!waiting) dma_read(byte_beat);
          else if (dma_ack) begin
            waiting <= 1'b0;
            if (dma_err) finish(BAD_ADDRESS, 32'd0, 64'd0);
            else begin
              beat <= dma_rdata;
              beat_addr <= byte_beat;
              beat_valid <= 1'b1;
            end
          end
        end else begin
          prio_row[a*8+:8] <= stream_byte;
          prio_ptr <= prio_ptr + 64'd1;
          if (a + 1 == 32'(d_size)) begin
            prio_we <= 1'b1;  // next cycle, with the row's last byte in it
            prio_addr <= VW'(v);
            a <= '0;
            if (v + 1 == n_vars) st <= S_START;
            else v <= v + 1;
          end else a <= a + 1;
        end

        S_START: begin
          eng_start <= !prio_we;  // after the last row was written
          if (!prio_we) st <= S_SOLVE;
        end

        S_SOLVE:
        if (eng_done && !eng_start) begin
          perf_nodes <= perf_nodes + eng_nodes;
          if (eng_aborted || aborting) finish(ABORTED, 32'd0, 64'd0);
          else begin
            perf_sweeps <= perf_sweeps + eng_sweeps;
            perf_instances <= perf_instances + 1;
            job_cycles <= job_cycles + eng_cycles;
            v <= '0;
            st <= S_OUTPUT;
          end
        end

        S_OUTPUT:
        if (!waiting) dma_write(dst_ptr, 64'(res_data));
        else if (dma_ack) begin
          waiting <= 1'b0;
          if (dma_err) finish(BAD_ADDRESS, 32'd0, 64'd0);
          else begin
            dst_ptr <= dst_ptr + 64'd8;
            if (v + 1 == n_vars) begin
              k <= '0;
              st <= S_RECORD;
            end else v <= v + 1;
          end
        end

        S_RECORD:
        if (!waiting) begin
          case (k[1:0])
            2'd0: dma_write(res_ptr, {eng_solutions[31:0], 29'd0, eng_status});
            2'd1: dma_write(res_ptr, eng_nodes);
            default: dma_write(res_ptr, eng_sweeps);
          endcase
        end else if (dma_ack) begin
          waiting <= 1'b0;
          if (dma_err) finish(BAD_ADDRESS, 32'd0, 64'd0);
          else begin
            res_ptr <= res_ptr + 64'd8;
            k <= k + 1'b1;
            if (k == 4'd2) begin
              if (q + 1 == items) finish(OK, items, job_cycles);
              else begin
                q <= q + 1;
                v <= '0;
                st <= S_DOMAINS;
              end
            end
          end
        end

        S_FINISH:
        if (cq_next == (17'(cq_head) & (cq_size - 17'd1))) halt(ERR_QUEUE_CONFIG, tag);  // the host let it overflow
        else begin
          cw[0] <= {phase ? 16'd1 : 16'd0, code, tag};
          cw[1] <= {seq + 32'd1, done_items};
          cw[2] <= job_cycles;
          cw[3] <= '0;
          seq <= seq + 1;
          crc <= 32'hFFFF_FFFF;
          k <= '0;
          st <= S_CRC;
        end

        S_CRC: begin
          crc <= crc_next;
          k <= k + 1'b1;
          if (k == 4'd3) begin
            cw[3] <= {~crc_next, 32'd0};
            if (corrupt) cw[1] <= cw[1] ^ 64'd8;  // a bit flipped on the way: the host's CRC check fails
            k <= '0;
            st <= S_COMPLETE;
          end
        end

        S_COMPLETE:
        // words 1, 2, 3, then 0: the word with the phase bit goes last, so a host that polls the phase bit
        // never reads a fresh phase beside stale words (NVMe's rule)
        if (!waiting) dma_write(cq_base + 64'({cq_tail, 5'd0}) + 64'({k[1:0] + 2'd1, 3'd0}), cw[k[1:0]+2'd1]);
        else if (dma_ack) begin
          waiting <= 1'b0;
          if (dma_err) halt(ERR_DMA, tag);
          else begin
            k <= k + 1'b1;
            if (k == 4'd3) begin
              cq_tail <= 16'(cq_next);
              if (cq_next == 17'd0) phase <= !phase;
              perf_jobs <= perf_jobs + 1;
              perf_cycles <= perf_cycles + job_cycles;
              set_completion <= 1'b1;
              irq_completion <= !hwif_out.IRQ_MASK.COMPLETION.value;
              st <= S_IDLE;
            end
          end
        end

        S_HANG: ;  // until a reset

        default: st <= S_IDLE;
      endcase
    end
  end

  always_comb begin
    crc_data = cw[k[1:0]];
    crc_bytes = k == 4'd3 ? 4'd4 : 4'd8;  // bytes 0..27: the last word's crc field is not covered
  end

  // N (u32 at byte 6) and D (u8 at byte 10) of the program just decoded, read from its header in program memory
  wire [PBW-1:0] hdr = PBW'(desc[4]);
  wire [31:0] hdr_w1 = pmem[hdr[PBW-1:2]+1];  // bytes 4..7
  wire [31:0] hdr_w2 = pmem[hdr[PBW-1:2]+2];  // bytes 8..11
  wire [31:0] pmem_header_n = {hdr_w2[15:0], hdr_w1[31:16]};
  wire [7:0] pmem_header_d = hdr_w2[23:16];

  // what the card does not use of wider buses (the flags' other bits are reserved, solutions beyond 2^32 do not fit
  // the record's u32, program memory is word aligned here)
  /* verilator lint_off UNUSEDSIGNAL */
  assign m_axi_awid = 4'd0;
  assign m_axi_arid = 4'd0;
  wire unused = &{1'b0, m_axi_bid, m_axi_rid, flags[31:1], win_write_addr[1:0], eng_busy, eng_solutions[63:32], hdr[1:0],
                  hdr_w1[15:0], hdr_w2[31:24]};
  /* verilator lint_on UNUSEDSIGNAL */

  task automatic dma_read(logic [63:0] addr);
    dma_req <= 1'b1;
    dma_we <= 1'b0;
    dma_addr <= addr;
    waiting <= 1'b1;
  endtask

  task automatic dma_write(logic [63:0] addr, logic [63:0] data);
    dma_req <= 1'b1;
    dma_we <= 1'b1;
    dma_addr <= addr;
    dma_wdata <= data;
    waiting <= 1'b1;
  endtask

  task automatic finish(logic [15:0] why, logic [31:0] answered, logic [63:0] cycles);
    code <= why;
    done_items <= answered;
    job_cycles <= cycles;
    st <= S_FINISH;
  endtask

  task automatic halt(logic [7:0] why, logic [31:0] job);
    if (err_code == 8'd0) begin
      err_code <= why;
      err_tag <= job;
    end
    halted <= 1'b1;
    set_error <= 1'b1;
    irq_error <= !hwif_out.IRQ_MASK.ERROR.value;
    st <= S_IDLE;
  endtask
endmodule
